{{/*
The REST gateway (Go): HTTP on 8080 with /healthz and /readyz, the web page, optionally the gRPC front on 50051.
Under Dapr it calls every service through its own sidecar (dapr-app-id); under the Kafka runtime straight to each
service's Service. `{{ include "todo-lib.gatewayChart" . }}` is the gateway chart's only template.
*/}}
{{- define "todo-lib.gatewayChart" -}}
{{- $v := fromYaml (include "todo-lib.values" .) -}}
{{- $ctx := dict "root" . "v" $v -}}
{{- include "todo-lib.serviceAccount" $ctx }}
---
{{ include "todo-lib.gatewayConfigMap" $ctx }}
---
{{ include "todo-lib.gatewayDeployment" $ctx }}
---
{{ include "todo-lib.gatewayService" $ctx }}
{{- if $v.autoscaling.enabled }}
---
{{ include "todo-lib.hpa" $ctx }}
{{- end }}
{{- if $v.podDisruptionBudget.enabled }}
---
{{ include "todo-lib.pdb" $ctx }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
---
{{ include "todo-lib.gatewayNetworkPolicy" $ctx }}
{{- end }}
{{- if $v.ingress.enabled }}
---
{{ include "todo-lib.ingress" $ctx }}
{{- end }}
{{- end -}}

{{- define "todo-lib.gatewaySettings" -}}
{{- $v := .v -}}
TODO_GATEWAY_LISTEN: "0.0.0.0:8080"
{{- if $v.gateway.grpcFront }}
TODO_GATEWAY_GRPC_LISTEN: "0.0.0.0:50051"
{{- end }}
TODO_GATEWAY_STATIC_DIR: {{ $v.gateway.staticDir | quote }}
TODO_GATEWAY_CORS_ORIGINS: {{ $v.gateway.corsOrigins | quote }}
TODO_GATEWAY_LOG_LEVEL: "info"
{{- if eq $v.global.runtime "dapr" }}
TODO_GATEWAY_DAPR_ADDRESS: "127.0.0.1:50001"
{{- else }}
{{- range $app := list "task_svc" "reminder_svc" "recurrence_svc" "notify_svc" "audit_svc" "chat_svc" }}
TODO_GATEWAY_BACKEND_{{ upper $app }}: {{ printf "%s.%s.svc:50051" (include "todo-lib.daprAppId" $app) $.root.Release.Namespace | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := $v.env }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "todo-lib.gatewayConfigMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
data:
  {{- include "todo-lib.gatewaySettings" . | nindent 2 }}
{{- end -}}

{{- define "todo-lib.gatewayDeployment" -}}
{{- $v := .v -}}
{{- $name := include "todo-lib.name" . -}}
{{- $dapr := eq $v.global.runtime "dapr" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "todo-lib.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "todo-lib.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "todo-lib.gatewaySettings" . | sha256sum }}
        {{- if $dapr }}
        {{- /* No app port: the gateway only calls out through its sidecar, nothing calls it through Dapr. */}}
        {{- include "todo-lib.daprAnnotations" (dict "v" $v "appPort" 0 "apiToken" $v.gateway.daprApiToken) | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ if $v.serviceAccount.create }}{{ $name }}{{ else }}default{{ end }}
      automountServiceAccountToken: {{ $dapr }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "todo-lib.podSecurityContext" . | nindent 8 }}
      containers:
        - name: {{ $name }}
          image: {{ include "todo-lib.image" . | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy | default $v.global.image.pullPolicy }}
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
            {{- if $v.gateway.grpcFront }}
            - name: grpc
              containerPort: 50051
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          {{- if or (and $dapr $v.gateway.daprApiToken) $v.secretEnv }}
          env:
            {{- if and $dapr $v.gateway.daprApiToken }}
            - name: DAPR_API_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ $v.global.dapr.apiTokenSecret }}
                  key: token
            {{- end }}
            {{- include "todo-lib.secretEnv" (dict "v" $v "runtimeSecrets" false) | indent 12 }}
          {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 30
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "todo-lib.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.affinity }}
      affinity:
        {{- toYaml $v.affinity | nindent 8 }}
      {{- else }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "todo-lib.selectorLabels" . | nindent 14 }}
      {{- end }}
{{- end -}}

{{- define "todo-lib.gatewayService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "todo-lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: 8080
      targetPort: http
      protocol: TCP
    {{- if .v.gateway.grpcFront }}
    - name: grpc
      port: 50051
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    {{- end }}
{{- end -}}

{{/* The gateway is the system's front door: HTTP (and the gRPC front) from anywhere, daprd metrics from the scraper. */}}
{{- define "todo-lib.gatewayNetworkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "todo-lib.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    - ports:
        - port: 8080
          protocol: TCP
        {{- if .v.gateway.grpcFront }}
        - port: 50051
          protocol: TCP
        {{- end }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ .v.global.networkPolicy.metricsNamespace }}
      ports:
        - port: 9090
          protocol: TCP
{{- end -}}

{{- define "todo-lib.ingress" -}}
{{- $i := .v.ingress -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
  annotations:
    {{- /* Live streams (server-sent events) stay open: no proxy buffering, long reads. */}}
    nginx.ingress.kubernetes.io/proxy-buffering: "off"
    nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"
    {{- with $i.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $i.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if $i.tlsSecret }}
  tls:
    - hosts:
        - {{ required "ingress.host is required with ingress.tlsSecret" $i.host | quote }}
      secretName: {{ $i.tlsSecret }}
  {{- end }}
  rules:
    - {{- with $i.host }}
      host: {{ . | quote }}
      {{- end }}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {{ include "todo-lib.name" . }}
                port:
                  name: http
{{- end -}}
