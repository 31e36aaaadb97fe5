{{/*
The caller's values over the library's defaults, as YAML (read it back with fromYaml). Every template of the library
works on these merged values, so a service chart's values.yaml names only what differs (its app id and image).
*/}}
{{- define "todo-lib.defaults" -}}
appId: ""
component: service
image:
  repository: ""
  tag: ""
  pullPolicy: ""
replicaCount: 1
resources:
  requests:
    cpu: 100m
    memory: 192Mi
  limits:
    cpu: "1"
    memory: 512Mi
env: {}
secretEnv: {}
secrets:
  databaseUrl: ""
  extra: []
autoscaling:
  enabled: false
  minReplicas: 2
  maxReplicas: 6
  targetCPUUtilizationPercentage: 70
podDisruptionBudget:
  enabled: true
  maxUnavailable: 1
networkPolicy:
  enabled: true
migration:
  enabled: true
  hooks: pre-install,pre-upgrade
  backoffLimit: 6
  activeDeadlineSeconds: 900
  resources:
    requests:
      cpu: 50m
      memory: 128Mi
    limits:
      cpu: 500m
      memory: 384Mi
serviceAccount:
  create: true
  annotations: {}
podAnnotations: {}
podLabels: {}
nodeSelector: {}
tolerations: []
affinity: {}
terminationGracePeriodSeconds: 40
ingress:
  enabled: false
  className: ""
  host: ""
  tlsSecret: ""
  annotations: {}
gateway:
  staticDir: /srv/web
  grpcFront: false
  corsOrigins: ""
  # The gateway's sidecar requires Dapr's API token (dapr.io/api-token-secret) and the gateway sends it
  # (DAPR_API_TOKEN from the same Secret) as dapr-api-token on every call. false: no token on either side.
  daprApiToken: true
global:
  runtime: dapr
  image:
    registry: ""
    tag: ""
    pullPolicy: IfNotPresent
  logLevel: INFO
  databasePrefix: ""
  jwtSecret: todo-jwt
  auth:
    mode: shared-key
    oidc:
      issuer: ""
      audience: ""
      jwksUrl: ""
      algorithms: RS256,ES256
      userClaim: sub
  rateLimit:
    perMinute: 600
    burst: 120
  otlpEndpoint: ""
  kafka:
    brokers: kafka:9092
    replicationFactor: 1
    createTopics: true
  dapr:
    config: todo-config
    apiTokenSecret: todo-dapr-api-token
    appTokenSecret: todo-dapr-app-token
    pubsub: todo-pubsub
    secretStore: todo-secrets
    stateStore: todo-state
    logLevel: info
    sidecar:
      cpuRequest: 50m
      cpuLimit: 500m
      memoryRequest: 64Mi
      memoryLimit: 256Mi
  networkPolicy:
    metricsNamespace: monitoring
{{- end -}}

{{- define "todo-lib.values" -}}
{{- $defaults := fromYaml (include "todo-lib.defaults" .) -}}
{{- $merged := $defaults -}}
{{- include "todo-lib.mergeInto" (dict "dst" $merged "src" (deepCopy .Values)) -}}
{{- if not $merged.appId -}}
{{- fail "appId is required (the service's app id, e.g. task_svc)" -}}
{{- end -}}
{{- if not (has $merged.global.runtime (list "dapr" "kafka")) -}}
{{- fail (printf "global.runtime must be dapr or kafka, not %q" $merged.global.runtime) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
Deep merge of .src into .dst (a dict, changed in place): maps merge key by key, anything else (false and 0 included)
replaces. Sprig's merge functions treat false, 0 and "" as unset, which would make `enabled: false` impossible.
*/}}
{{- define "todo-lib.mergeInto" -}}
{{- $dst := .dst -}}
{{- range $key, $value := .src -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) -}}
{{- include "todo-lib.mergeInto" (dict "dst" (get $dst $key) "src" $value) -}}
{{- else -}}
{{- $_ := set $dst $key $value -}}
{{- end -}}
{{- end -}}
{{- end -}}
