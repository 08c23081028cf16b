{{/* Shared pieces of the in-chart backing servers (StatefulSets of third-party images). */}}
{{- define "plexica.backingSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  capabilities:
    drop: [ALL]
{{- end -}}

{{- /* The uid is 10000 + the image's own user where the image runs as any user (no clash with
a host's users, ADR 0235); the volumes are its group's, re-owned only when their root is not. */}}
{{- define "plexica.backingPodSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "plexica.pvc" -}}
- metadata:
    name: data
  spec:
    accessModes: [ReadWriteOnce]
    {{- with .root.Values.global.storageClass }}
    storageClassName: {{ . }}
    {{- end }}
    resources:
      requests:
        storage: {{ .size }}
{{- end -}}
