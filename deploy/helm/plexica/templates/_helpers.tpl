{{/* Names, labels and shared fragments. */}}

{{- define "plexica.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "plexica.name" -}}
{{- printf "%s-%s" (include "plexica.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "plexica.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "plexica.labels" -}}
{{ include "plexica.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- /* image.digests.<name> (from CI) pins an image by digest: <repo>@sha256:..., tag dropped. */}}
{{- define "plexica.image" -}}
{{- $root := .root -}}
{{- $tag := default $root.Chart.AppVersion (default $root.Values.image.tag .tag) -}}
{{- $repo := ternary (printf "%s/%s" $root.Values.image.registry .image) (printf "plexica/%s" .image) (ne $root.Values.image.registry "") -}}
{{- with index ($root.Values.image.digests | default dict) .image -}}
{{- printf "%s@%s" $repo . -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* A third-party image (Args: root, image, tag): by digest when image.digests names it. */}}
{{- define "plexica.thirdPartyImage" -}}
{{- with index (.root.Values.image.digests | default dict) .image -}}
{{- printf "%s@%s" $.image . -}}
{{- else -}}
{{- printf "%s:%s" .image .tag -}}
{{- end -}}
{{- end -}}

{{/* Spread over hosts and zones (Args: root, component): a node or a zone lost takes only its
     share of the replicas. Soft, so a single-zone cluster still schedules. */}}
{{- define "plexica.spread" -}}
{{- $ctx := dict "root" .root "component" .component -}}
topologySpreadConstraints:
  {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "plexica.selectorLabels" $ctx | nindent 8 }}
  {{- end }}
{{- end -}}

{{- define "plexica.secretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "plexica.fullname" .) -}}
{{- else -}}
{{- required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "plexica.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "plexica.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* PLEXICA_* environment of the platform's serving processes (core, worker): the runtime
login, never the owner's (ADR 0215); the object store's platform user, never its root (ADR 0220). */}}
{{- define "plexica.platformEnv" -}}
- name: PLEXICA_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: runtime-database-url
- name: PLEXICA_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: redis-url
- name: PLEXICA_STORAGE_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: storage-platform-access-key
- name: PLEXICA_STORAGE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: storage-platform-secret-key
- name: PLEXICA_KEYCLOAK_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: keycloak-client-secret
- name: PLEXICA_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "plexica.secretName" .root }}
      key: kafka-platform-password
      optional: true
{{- end -}}

{{/* Where users reach the platform: the Ingress host, https when it terminates TLS. */}}
{{- define "plexica.publicUrl" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.global.domain -}}
{{- end -}}

{{/* The platform's principal at the broker (ADR 0218, 0253), core's and worker's: made by the
grants job, no super user; empty for a broker without SASL. */}}
{{- define "plexica.kafkaUsername" -}}
{{- if .Values.redpanda.enabled -}}
{{- ternary "plexica-platform" "" .Values.redpanda.sasl.enabled -}}
{{- else -}}
{{- .Values.external.kafkaUsername -}}
{{- end -}}
{{- end -}}

{{/* The broker's administrator (ADR 0253), held by the grants job only: the in-chart Redpanda's
bootstrap super user, or a managed broker's. */}}
{{- define "plexica.kafkaAdminUsername" -}}
{{- if .Values.redpanda.enabled -}}
plexica
{{- else -}}
{{- required "external.kafkaAdminUsername is required with external.kafkaUsername: the grants job makes the principals (ADR 0253)" .Values.external.kafkaAdminUsername -}}
{{- end -}}
{{- end -}}

{{- define "plexica.kafkaBrokers" -}}
{{- if .Values.redpanda.enabled -}}
{{- $name := include "plexica.name" (dict "root" . "component" "redpanda") -}}
{{- $brokers := list -}}
{{- range $i := until (int .Values.redpanda.replicas) -}}
{{- $brokers = append $brokers (printf "%s-%d.%s-headless:9092" $name $i $name) -}}
{{- end -}}
{{- join "," $brokers -}}
{{- else -}}
{{- required "external.kafkaBrokers is required when redpanda.enabled is false" .Values.external.kafkaBrokers -}}
{{- end -}}
{{- end -}}

{{- define "plexica.keycloakUrl" -}}
{{- if .Values.keycloak.enabled -}}
{{- printf "http://%s:8080/auth" (include "plexica.name" (dict "root" . "component" "keycloak")) -}}
{{- else -}}
{{- required "external.keycloakUrl is required when keycloak.enabled is false" .Values.external.keycloakUrl -}}
{{- end -}}
{{- end -}}

{{/* Where browsers reach Keycloak and the issuer its tokens name (its KC_HOSTNAME, ADR 0244). */}}
{{- define "plexica.keycloakPublicUrl" -}}
{{- if .Values.keycloak.enabled -}}
{{- printf "https://%s/auth" .Values.global.domain -}}
{{- else -}}
{{- .Values.external.keycloakPublicUrl | default (include "plexica.keycloakUrl" .) -}}
{{- end -}}
{{- end -}}

{{- define "plexica.storageEndpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s:9000" (include "plexica.name" (dict "root" . "component" "minio")) -}}
{{- else -}}
{{- required "external.storageEndpoint is required when minio.enabled is false" .Values.external.storageEndpoint -}}
{{- end -}}
{{- end -}}

{{/* Probes on the service's own port: liveness /health (no I/O), readiness /ready. */}}
{{- define "plexica.probes" -}}
startupProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /ready, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* A container's resources with an ephemeral-storage request and limit (values.ephemeralStorage
unless its own resources name them): its emptyDirs and logs cannot fill the node. Args: root,
resources. */}}
{{- define "plexica.resources" -}}
{{- $eph := .root.Values.ephemeralStorage }}
{{- $requests := merge (deepCopy (get .resources "requests" | default dict)) (dict "ephemeral-storage" $eph.request) }}
{{- $limits := merge (deepCopy (get .resources "limits" | default dict)) (dict "ephemeral-storage" $eph.limit) }}
{{- toYaml (dict "requests" $requests "limits" $limits) }}
{{- end -}}

{{/* A Deployment of one Plexica process. Args: root, component, image, replicas, resources,
     command (list), env (rendered YAML list), serviceAccount, extraLabels (dict). */}}
{{- define "plexica.serviceDeployment" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "plexica.name" $ctx }}
  labels:
    {{- include "plexica.labels" $ctx | nindent 4 }}
    {{- with .extraLabels }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  {{- if not .autoscaling }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 10
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}
  selector:
    matchLabels:
      {{- include "plexica.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "plexica.labels" $ctx | nindent 8 }}
        {{- with .extraLabels }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        checksum/config: {{ include (print .root.Template.BasePath "/core/configmap.yaml") .root | sha256sum | trunc 16 }}
        prometheus.io/scrape: "true"
        prometheus.io/port: "3000"
        prometheus.io/path: /metrics
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- /* preStop, then SIGTERM: the drain (/ready 503, still serving), then in-flight work
           gets shutdownGraceSeconds; 5 s to spare before the kubelet's SIGKILL (ADR 0142). */}}
      terminationGracePeriodSeconds: {{ add (int .root.Values.config.preStopSeconds) (int .root.Values.config.drainSeconds) (int .root.Values.config.shutdownGraceSeconds) 5 }}
      {{- include "plexica.podSecurityContext" .root | nindent 6 }}
      {{- with .root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "plexica.spread" $ctx | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "plexica.image" (dict "root" .root "image" .image "tag" .tag) }}
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: 3000
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "plexica.name" (dict "root" .root "component" "config") }}
            {{- if .platform }}
            - configMapRef:
                name: {{ include "plexica.name" (dict "root" .root "component" "platform-config") }}
            {{- end }}
          env:
            - name: PLEXICA_SERVICE
              value: {{ .component | quote }}
            {{- .env | nindent 12 }}
          resources:
            {{- include "plexica.resources" (dict "root" .root "resources" .resources) | nindent 12 }}
          {{- include "plexica.probes" . | nindent 10 }}
          lifecycle:
            # The endpoints and the edge learn of the pod's deletion while this runs.
            preStop:
              exec: {command: ["sleep", {{ .root.Values.config.preStopSeconds | quote }}]}
          {{- include "plexica.containerSecurityContext" .root | nindent 10 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
{{- end -}}

{{/* Args: root, component, port, targetPort; live: the "-any" twin that also publishes pods
whose readiness fails, for the gateway's panic routing (ADR 0227). */}}
{{- define "plexica.service" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "plexica.name" $ctx }}{{ if .live }}-any{{ end }}
  labels:
    {{- include "plexica.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  {{- if .live }}
  publishNotReadyAddresses: true
  {{- end }}
  selector:
    {{- include "plexica.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ .port | default 3000 }}
      targetPort: {{ .targetPort | default "http" }}
      protocol: TCP
{{- end -}}

{{- define "plexica.pdb" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "plexica.name" $ctx }}
  labels:
    {{- include "plexica.labels" $ctx | nindent 4 }}
spec:
  {{- if ge (int .replicas) 2 }}
  minAvailable: {{ .minAvailable }}
  {{- else }}
  maxUnavailable: 1
  {{- end }}
  # A pod that is not ready protects nothing: draining a node never waits on it.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "plexica.selectorLabels" $ctx | nindent 6 }}
{{- end -}}

{{- define "plexica.hpa" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "plexica.name" $ctx }}
  labels:
    {{- include "plexica.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "plexica.name" $ctx }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
{{- end -}}

{{/* The grants job's pod (ADR 0253): `plexica plugin broker-acls` as the broker's administrator,
reading the catalog with the runtime login. */}}
{{- define "plexica.brokerGrantsPod" -}}
{{- $secret := include "plexica.secretName" . -}}
metadata:
  labels:
    {{- include "plexica.labels" (dict "root" . "component" "broker-grants") | nindent 4 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- include "plexica.podSecurityContext" . | nindent 2 }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: broker-grants
      image: {{ include "plexica.image" (dict "root" . "image" .Values.core.image) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["plugin", "broker-acls", "--json"]
      env:
        - {name: PLEXICA_LOG_FORMAT, value: json}
        - {name: PLEXICA_DATA_DIR, value: /tmp/plexica}
        - name: PLEXICA_DATABASE_URL
          valueFrom: {secretKeyRef: {name: {{ $secret }}, key: runtime-database-url}}
        - {name: PLEXICA_KAFKA_BROKERS, value: {{ include "plexica.kafkaBrokers" . | quote }}}
        - {name: PLEXICA_KAFKA_USERNAME, value: {{ include "plexica.kafkaUsername" . | quote }}}
        - name: PLEXICA_KAFKA_PASSWORD
          valueFrom: {secretKeyRef: {name: {{ $secret }}, key: kafka-platform-password}}
        - {name: PLEXICA_KAFKA_ADMIN_USERNAME, value: {{ include "plexica.kafkaAdminUsername" . | quote }}}
        - name: PLEXICA_KAFKA_ADMIN_PASSWORD
          valueFrom: {secretKeyRef: {name: {{ $secret }}, key: kafka-password}}
      resources:
        {{- include "plexica.resources" (dict "root" . "resources" (dict "requests" (dict "cpu" "50m" "memory" "128Mi") "limits" (dict "cpu" "250m" "memory" "256Mi"))) | nindent 8 }}
      {{- include "plexica.containerSecurityContext" . | nindent 6 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
{{- end -}}
