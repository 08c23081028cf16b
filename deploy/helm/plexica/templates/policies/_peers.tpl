{{/* NetworkPolicy peers and egress rules. */}}
{{- define "plexica.peer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "plexica.pluginsPeer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/instance: {{ .Release.Name }}
  matchExpressions:
    - {key: plexica.io/plugin, operator: Exists}
{{- end }}
{{- /* egress to a backing server: the in-chart pods, or the configured CIDR (any address when
none). With "required" (the CIDR's values key: plugins, ADR 0211) no CIDR refuses to render. */}}
{{- define "plexica.backingEgress" -}}
{{- $required := get . "required" }}
{{- if and $required (not .enabled) (not .cidr) }}
{{- fail (printf "%s is required when %s.enabled is false: a plugin's egress is never 0.0.0.0/0 (ADR 0211)" $required .component) }}
{{- end -}}
- to:
    {{- if .enabled }}
    - {{- include "plexica.peer" (dict "root" .root "component" .component) | nindent 6 }}
    {{- else if .cidr }}
    - ipBlock: {cidr: {{ .cidr }}}
    {{- else }}
    - ipBlock: {cidr: 0.0.0.0/0}
    {{- end }}
  ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
