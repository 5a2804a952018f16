{{/* Names and labels, as `helm create` makes them. */}}
{{- define "oidc-bff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oidc-bff.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "oidc-bff.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oidc-bff.labels" -}}
helm.sh/chart: {{ include "oidc-bff.chart" . }}
{{ include "oidc-bff.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "oidc-bff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oidc-bff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oidc-bff.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oidc-bff.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the Secret's files are mounted in the container. */}}
{{- define "oidc-bff.secretsDir" -}}
/var/run/secrets/oidc-bff
{{- end }}

{{/* Where the ConfigMap's oidc-bff.toml is mounted. */}}
{{- define "oidc-bff.configDir" -}}
/etc/oidc-bff
{{- end }}

{{- define "oidc-bff.secretName" -}}
{{- default (include "oidc-bff.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
The keys of the Secret in use, as YAML: clientSecret, sessionKeys, redisUrl,
redisPassword, adminToken, each the key name or "" when that secret is not given.
*/}}
{{- define "oidc-bff.secretKeys" -}}
{{- if .Values.existingSecret }}
{{- $k := .Values.existingSecretKeys }}
clientSecret: {{ $k.clientSecret | default "" | quote }}
sessionKeys: {{ $k.sessionKeys | default "" | quote }}
redisUrl: {{ $k.redisUrl | default "" | quote }}
redisPassword: {{ $k.redisPassword | default "" | quote }}
adminToken: {{ $k.adminToken | default "" | quote }}
{{- else }}
{{- $s := .Values.secrets }}
clientSecret: {{ ternary "client-secret" "" (not (empty $s.clientSecret)) | quote }}
sessionKeys: {{ ternary "session-keys" "" (not (empty $s.sessionKeys)) | quote }}
redisUrl: {{ ternary "redis-url" "" (not (empty $s.redisUrl)) | quote }}
redisPassword: {{ ternary "redis-password" "" (not (empty $s.redisPassword)) | quote }}
adminToken: {{ ternary "admin-token" "" (not (empty $s.adminToken)) | quote }}
{{- end }}
{{- end }}

{{/* The most replicas that can run at once. */}}
{{- define "oidc-bff.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/* The fewest replicas that run (for the PodDisruptionBudget). */}}
{{- define "oidc-bff.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Checks what the schema cannot express, with messages that say what to do.
Included by the ConfigMap, so `helm template` and `helm install` stop here.
*/}}
{{- define "oidc-bff.validate" -}}
{{- $c := .Values.config }}
{{- $server := $c.server | default dict }}
{{- $session := $c.session | default dict }}
{{- $provider := $c.provider | default dict }}
{{- $keys := include "oidc-bff.secretKeys" . | fromYaml }}
{{- range $k := list "listen" "admin_listen" }}
{{- if hasKey $server $k }}
{{- fail (printf "config.server.%s is set by the chart from containerPorts (the probes, Service and NetworkPolicy use them); remove it" $k) }}
{{- end }}
{{- end }}
{{- if hasKey $server "admin_token_file" }}
{{- fail "config.server.admin_token_file is set by the chart; put the admin token in secrets.adminToken (or existingSecret with existingSecretKeys.adminToken)" }}
{{- end }}
{{- range $k := list "client_secret" "client_secret_file" }}
{{- if hasKey $provider $k }}
{{- fail (printf "config.provider.%s: the client secret does not belong in the ConfigMap; set secrets.clientSecret (or existingSecret)" $k) }}
{{- end }}
{{- end }}
{{- range $k := list "keys" "keys_file" }}
{{- if hasKey $session $k }}
{{- fail (printf "config.session.%s: session keys do not belong in the ConfigMap; set secrets.sessionKeys (or existingSecret)" $k) }}
{{- end }}
{{- end }}
{{- range $k := list "redis_password" "redis_password_file" }}
{{- if hasKey $session $k }}
{{- fail (printf "config.session.%s: the Redis password does not belong in the ConfigMap; set secrets.redisPassword (or existingSecret)" $k) }}
{{- end }}
{{- end }}
{{- if not $keys.sessionKeys }}
{{- fail "session keys are required: set secrets.sessionKeys to a list of keys from `oidc-bff generate-key` (or existingSecret with existingSecretKeys.sessionKeys)" }}
{{- end }}
{{- $store := $session.store | default "memory" }}
{{- $maxReplicas := include "oidc-bff.maxReplicas" . | int }}
{{- if and (gt $maxReplicas 1) (ne $store "redis") }}
{{- fail (printf "%d replicas need a shared session store, but config.session.store is %q: sessions in memory are lost between replicas. Set config.session.store=redis with a Redis URL (secrets.redisUrl or config.session.redis_url), or run replicaCount=1 without autoscaling." $maxReplicas $store) }}
{{- end }}
{{- if eq $store "redis" }}
{{- if not (or $keys.redisUrl $session.redis_url $session.redis_cluster_urls) }}
{{- fail "config.session.store is \"redis\" but no Redis is named: set secrets.redisUrl (or existingSecretKeys.redisUrl), config.session.redis_url or config.session.redis_cluster_urls" }}
{{- end }}
{{- end }}
{{- if and $keys.redisUrl $session.redis_url }}
{{- fail "set the Redis URL once: either secrets.redisUrl (or existingSecretKeys.redisUrl) or config.session.redis_url" }}
{{- end }}
{{- end }}

{{/*
One TOML value from a Helm value. Numbers arrive from YAML as float64, so
whole numbers are written as integers (the gateway's counts are integers).
Strings are written as JSON strings, whose escapes are all valid TOML.
Maps become inline tables, lists arrays.
*/}}
{{- define "oidc-bff.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{ toJson $v }}
{{- else if kindIs "bool" $v -}}
{{ ternary "true" "false" $v }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) -}}
{{ printf "%d" $v }}
{{- else if kindIs "float64" $v -}}
{{- if eq $v (float64 (int64 $v)) }}{{ printf "%d" (int64 $v) }}{{ else }}{{ toJson $v }}{{ end -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v }}{{ $items = append $items (include "oidc-bff.tomlValue" .) }}{{ end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" $v -}}
{{- $items := list -}}
{{- range $k, $x := $v }}{{ if not (kindIs "invalid" $x) }}{{ $items = append $items (printf "%s = %s" (include "oidc-bff.tomlKey" $k) (include "oidc-bff.tomlValue" $x)) }}{{ end }}{{ end -}}
{{ printf "{ %s }" (join ", " $items) }}
{{- else -}}
{{ fail (printf "cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end -}}
{{- end }}

{{- define "oidc-bff.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end -}}
{{- end }}

{{/* The `key = value` lines of one table; null values are left out. */}}
{{- define "oidc-bff.tomlTable" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "invalid" $v) }}
{{ include "oidc-bff.tomlKey" $k }} = {{ include "oidc-bff.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
oidc-bff.toml: the `config` values one to one, plus what the chart owns: the
listeners and the secret files mounted from the Secret.
*/}}
{{- define "oidc-bff.configToml" -}}
{{- $c := .Values.config }}
{{- $keys := include "oidc-bff.secretKeys" . | fromYaml }}
{{- $dir := include "oidc-bff.secretsDir" . }}
{{- $server := deepCopy ($c.server | default dict) }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.http)) }}
{{- $_ := set $server "admin_listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.admin)) }}
{{- if $keys.adminToken }}
{{- $_ := set $server "admin_token_file" (printf "%s/admin-token" $dir) }}
{{- end }}
{{- $_ := required "config.server.public_url is required: the origin the browser sees, e.g. https://app.example.com" $server.public_url }}
{{- $provider := deepCopy ($c.provider | default dict) }}
{{- $_ := required "config.provider.client_id is required: the OAuth client id registered at the IdP" $provider.client_id }}
{{- if $keys.clientSecret }}
{{- $_ := set $provider "client_secret_file" (printf "%s/client-secret" $dir) }}
{{- end }}
{{- $session := deepCopy ($c.session | default dict) }}
{{- $_ := set $session "keys_file" (printf "%s/session-keys" $dir) }}
{{- if $keys.redisPassword }}
{{- $_ := set $session "redis_password_file" (printf "%s/redis-password" $dir) }}
{{- end -}}
# Rendered by the oidc-bff Helm chart from .Values.config; every key is
# documented in config/oidc-bff.example.toml. Secrets come from the files
# under {{ $dir }} and the environment.

[server]
{{- include "oidc-bff.tomlTable" $server }}

[provider]
{{- include "oidc-bff.tomlTable" $provider }}

[session]
{{- include "oidc-bff.tomlTable" $session }}
{{- with $c.spa }}

[spa]
{{- include "oidc-bff.tomlTable" . }}
{{- end }}
{{- range $c.route }}

[[route]]
{{- include "oidc-bff.tomlTable" . }}
{{- end }}
{{- end }}
