{{/* The Dapr app id and Kubernetes name of a unit: its app id with _ as - (DNS labels have no _). */}}
{{- define "todo-lib.daprAppId" -}}
{{- . | replace "_" "-" -}}
{{- end -}}

{{/* Labels every object of a unit carries. */}}
{{- define "todo-lib.labels" -}}
{{- $v := .v -}}
app.kubernetes.io/name: {{ include "todo-lib.daprAppId" $v.appId }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ $v.component }}
app.kubernetes.io/part-of: todo-chatbot
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The labels a unit's pods are selected by (never change between releases: selectors are immutable). */}}
{{- define "todo-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "todo-lib.daprAppId" .v.appId }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* registry/repository:tag; the tag defaults to the release-wide one, then to the chart's appVersion. */}}
{{- define "todo-lib.image" -}}
{{- $v := .v -}}
{{- $tag := $v.image.tag | default $v.global.image.tag | default .root.Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "%s: image tag latest is not allowed, name a version" $v.appId) -}}
{{- end -}}
{{- $repo := $v.image.repository | default (printf "todo-chatbot/%s" (include "todo-lib.daprAppId" $v.appId)) -}}
{{- if $v.global.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $v.global.image.registry) $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* The secret holding the unit's database URL (postgresql://user:password@host:port/{database}). */}}
{{- define "todo-lib.databaseSecret" -}}
{{- .secrets.databaseUrl | default (printf "%s-database-url" (include "todo-lib.daprAppId" .appId)) -}}
{{- end -}}

{{/* Pod-level security: a fixed non-root user (the images' uid 10001), the runtime's default seccomp profile. */}}
{{- define "todo-lib.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root, no privilege escalation, every capability dropped. */}}
{{- define "todo-lib.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Plain settings of a Python service (the ConfigMap's data; never a secret: secrets arrive by secretKeyRef or, under
Dapr, as `secret:<name>` references the Dapr host resolves through the secret store).
*/}}
{{- define "todo-lib.settings" -}}
{{- $v := .v -}}
{{- $g := $v.global -}}
TODO_RUNTIME: {{ $g.runtime | quote }}
TODO_GRPC_HOST: "0.0.0.0"
TODO_GRPC_PORT: "50051"
TODO_LOG_LEVEL: {{ $g.logLevel | quote }}
TODO_DATABASE_PREFIX: {{ $g.databasePrefix | quote }}
TODO_AUTH_MODE: {{ $g.auth.mode | quote }}
{{- if eq $g.auth.mode "oidc" }}
TODO_OIDC_ISSUER: {{ required "global.auth.oidc.issuer is required with global.auth.mode=oidc" $g.auth.oidc.issuer | quote }}
TODO_OIDC_AUDIENCE: {{ required "global.auth.oidc.audience is required with global.auth.mode=oidc" $g.auth.oidc.audience | quote }}
{{- with $g.auth.oidc.jwksUrl }}
TODO_OIDC_JWKS_URL: {{ . | quote }}
{{- end }}
TODO_OIDC_ALGORITHMS: {{ $g.auth.oidc.algorithms | quote }}
TODO_OIDC_USER_CLAIM: {{ $g.auth.oidc.userClaim | quote }}
{{- end }}
TODO_RATE_LIMIT_PER_MINUTE: {{ $g.rateLimit.perMinute | toString | quote }}
TODO_RATE_LIMIT_BURST: {{ $g.rateLimit.burst | toString | quote }}
{{- with $g.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- if eq $g.runtime "dapr" }}
TODO_DAPR_PUBSUB: {{ $g.dapr.pubsub | quote }}
TODO_DAPR_SECRET_STORE: {{ $g.dapr.secretStore | quote }}
TODO_DAPR_STATE_STORE: {{ $g.dapr.stateStore | quote }}
TODO_DATABASE_URL: {{ printf "secret:%s" (include "todo-lib.databaseSecret" $v) | quote }}
TODO_JWT_SECRET: {{ printf "secret:%s" $g.jwtSecret | quote }}
{{- else }}
TODO_KAFKA_BOOTSTRAP: {{ $g.kafka.brokers | quote }}
TODO_KAFKA_REPLICATION_FACTOR: {{ $g.kafka.replicationFactor | toString | quote }}
TODO_KAFKA_CREATE_TOPICS: {{ $g.kafka.createTopics | toString | quote }}
TODO_SERVICE_ADDRESSES: {{ include "todo-lib.serviceAddresses" . | quote }}
{{- end }}
{{- range $name, $value := $v.env }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* app_id=host:port of every service (the Kafka runtime's direct commands): the Services of this release. */}}
{{- define "todo-lib.serviceAddresses" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $out := list -}}
{{- range $app := list "task_svc" "reminder_svc" "recurrence_svc" "notify_svc" "audit_svc" "chat_svc" -}}
{{- $out = append $out (printf "%s=%s.%s.svc:50051" $app (include "todo-lib.daprAppId" $app) $ns) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* secretKeyRef env entries: the database URL and signing key when .runtimeSecrets (Kafka runtime, migration Job), and secretEnv. */}}
{{- define "todo-lib.secretEnv" -}}
{{- $v := .v -}}
{{- if .runtimeSecrets }}
{{- $db := include "todo-lib.databaseSecret" $v }}
- name: TODO_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db }}
      key: {{ $db }}
- name: TODO_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.global.jwtSecret }}
      key: {{ $v.global.jwtSecret }}
{{- end }}
{{- range $name, $ref := $v.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secret }}
      key: {{ $ref.key | default $ref.secret }}
{{- end }}
{{- end -}}

{{/* Dapr's tokens in the app container (the injector gives them to daprd only): the app checks callbacks with
APP_API_TOKEN and sends DAPR_API_TOKEN to its sidecar. */}}
{{- define "todo-lib.daprTokenEnv" -}}
- name: APP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .global.dapr.appTokenSecret }}
      key: token
- name: DAPR_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .global.dapr.apiTokenSecret }}
      key: token
{{- end -}}

{{/* The Dapr sidecar annotations of a pod. */}}
{{- define "todo-lib.daprAnnotations" -}}
{{- $v := .v -}}
{{- $d := $v.global.dapr -}}
dapr.io/enabled: "true"
dapr.io/app-id: {{ include "todo-lib.daprAppId" $v.appId | quote }}
{{- if .appPort }}
dapr.io/app-port: {{ .appPort | quote }}
dapr.io/app-protocol: "grpc"
dapr.io/enable-app-health-check: "true"
{{- end }}
dapr.io/config: {{ $d.config | quote }}
{{- if .apiToken }}
dapr.io/api-token-secret: {{ $d.apiTokenSecret | quote }}
{{- end }}
{{- if .appPort }}
dapr.io/app-token-secret: {{ $d.appTokenSecret | quote }}
{{- end }}
dapr.io/log-level: {{ $d.logLevel | quote }}
dapr.io/log-as-json: "true"
dapr.io/enable-metrics: "true"
dapr.io/metrics-port: "9090"
dapr.io/graceful-shutdown-seconds: "30"
dapr.io/sidecar-cpu-request: {{ $d.sidecar.cpuRequest | quote }}
dapr.io/sidecar-cpu-limit: {{ $d.sidecar.cpuLimit | quote }}
dapr.io/sidecar-memory-request: {{ $d.sidecar.memoryRequest | quote }}
dapr.io/sidecar-memory-limit: {{ $d.sidecar.memoryLimit | quote }}
{{- end -}}
