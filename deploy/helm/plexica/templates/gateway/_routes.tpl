{{/* The API routes the gateway serves: a list of dicts {name, prefix, service}. */}}
{{- define "plexica.gatewayRoutes" -}}
{{- $routes := list (dict "name" "core-api" "prefix" "/api/core" "service" (include "plexica.name" (dict "root" . "component" "core-api"))) -}}
{{- range $slug, $p := .Values.plugins -}}
{{- if $p.enabled -}}
{{- $routes = append $routes (dict "name" (printf "plugin-%s" $slug) "prefix" (printf "/api/plugins/%s" $slug) "service" (include "plexica.name" (dict "root" $ "component" (printf "plugin-%s" $slug)))) -}}
{{- end -}}
{{- end -}}
{{- toJson $routes -}}
{{- end -}}

{{- define "plexica.gatewayRedis" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s:6379" (include "plexica.name" (dict "root" . "component" "redis")) -}}
{{- else -}}
{{- .Values.external.redis.endpoint | default "" -}}
{{- end -}}
{{- end -}}
