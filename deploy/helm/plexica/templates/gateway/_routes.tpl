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


{{/* Kong's forward-auth to the decision: the pre-function `plexica gateway config kong` writes.
Args: core (the core's service name). */}}
{{- define "plexica.kongAuth" }}
- name: pre-function
  config:
    access:
      - |
        local http = require "resty.http"
        local names = {"X-Tenant-ID", "X-Tenant-Slug", "X-User-ID", "X-User-Roles", "X-Trace-ID"}
        for _, h in ipairs(names) do kong.service.request.clear_header(h) end
        local query = kong.request.get_raw_query()
        local uri = kong.request.get_raw_path() .. ((query ~= "" and ("?" .. query)) or "")
        local res, err = http.new():request_uri("http://{{ .core }}:3000/v1/gateway/authorize", {
          method = "GET",
          headers = {
            ["Authorization"] = kong.request.get_header("authorization"),
            ["X-Trace-ID"] = kong.request.get_header("x-trace-id"),
            ["X-Forwarded-Method"] = kong.request.get_method(),
            ["X-Forwarded-Uri"] = uri,
            ["X-Forwarded-Host"] = kong.request.get_host(),
          },
        })
        if not res then
          kong.log.err("gateway decision unavailable: ", err)
          return kong.response.exit(503, {
            error = {code = "unavailable", message = "gateway decision unavailable", details = ngx.null},
          })
        end
        if res.status ~= 200 then
          local out = {["Content-Type"] = "application/json"}
          for _, h in ipairs({"Retry-After", "WWW-Authenticate", "RateLimit-Limit",
                              "RateLimit-Remaining", "RateLimit-Reset", "X-Trace-ID", "X-Request-ID"}) do
            out[h] = res.headers[h]
          end
          return kong.response.exit(res.status, res.body, out)
        end
        for _, h in ipairs(names) do
          local v = res.headers[h]
          if v and v ~= "" then kong.service.request.set_header(h, v) end
        end
        local limit = {{ .limit }}
        local declared = tonumber(kong.request.get_header("content-length") or "")
        if limit and declared and declared > limit then
          return kong.response.exit(413, {
            error = {code = "payload_too_large",
                     message = "the request body is larger than this route accepts", details = ngx.null},
          }, {["Content-Type"] = "application/json", ["X-Request-ID"] = res.headers["X-Request-ID"]})
        end
{{- end -}}
