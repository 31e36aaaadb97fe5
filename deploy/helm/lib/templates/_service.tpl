{{/*
Everything one Python service of the system needs: `{{ include "todo-lib.serviceChart" . }}` is a service chart's
only template. The same image runs the service (`todo-serve <app_id>`) and its migrations (`todo-migrate <app_id>`).
*/}}
{{- define "todo-lib.serviceChart" -}}
{{- $v := fromYaml (include "todo-lib.values" .) -}}
{{- $ctx := dict "root" . "v" $v -}}
{{- include "todo-lib.serviceAccount" $ctx }}
---
{{ include "todo-lib.configMap" $ctx }}
---
{{ include "todo-lib.deployment" $ctx }}
---
{{ include "todo-lib.grpcService" $ctx }}
{{- if eq $v.global.runtime "dapr" }}
---
{{ include "todo-lib.secretReader" $ctx }}
{{- end }}
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
{{ include "todo-lib.networkPolicy" $ctx }}
{{- end }}
{{- if $v.migration.enabled }}
---
{{ include "todo-lib.migrationJob" $ctx }}
{{- end }}
{{- end -}}

{{- define "todo-lib.name" -}}
{{- include "todo-lib.daprAppId" .v.appId -}}
{{- end -}}

{{- define "todo-lib.serviceAccount" -}}
{{- if .v.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
  {{- with .v.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- /* Only daprd talks to the Kubernetes API (its secret store, its identity); a Kafka-runtime pod needs no token. */}}
automountServiceAccountToken: {{ eq .v.global.runtime "dapr" }}
{{- end }}
{{- end -}}

{{- define "todo-lib.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
data:
  {{- include "todo-lib.settings" . | nindent 2 }}
{{- end -}}

{{- define "todo-lib.deployment" -}}
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
        {{- /* A changed ConfigMap rolls the pods (env is read at start only). */}}
        checksum/config: {{ include "todo-lib.settings" . | sha256sum }}
        {{- if $dapr }}
        {{- include "todo-lib.daprAnnotations" (dict "v" $v "appPort" 50051 "apiToken" true) | nindent 8 }}
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
          args:
            - {{ $v.appId | quote }}
          ports:
            - name: grpc
              containerPort: 50051
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $name }}
          env:
            {{- if $dapr }}
            {{- include "todo-lib.daprTokenEnv" $v | nindent 12 }}
            {{- end }}
            {{- include "todo-lib.secretEnv" (dict "v" $v "runtimeSecrets" (eq $v.global.runtime "kafka")) | indent 12 }}
          startupProbe:
            grpc:
              port: 50051
            periodSeconds: 2
            failureThreshold: 90
          readinessProbe:
            grpc:
              port: 50051
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            grpc:
              port: 50051
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
      {{- /* Replicas on different nodes where there are several, so one node's loss leaves the service up. */}}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "todo-lib.selectorLabels" . | nindent 14 }}
      {{- end }}
{{- end -}}

{{- define "todo-lib.grpcService" -}}
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
    - name: grpc
      port: 50051
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
{{- end -}}

{{/* Lets the pod's daprd read exactly the secrets this unit uses from the Kubernetes secret store, nothing else. */}}
{{- define "todo-lib.secretReader" -}}
{{- $name := include "todo-lib.name" . -}}
{{- $secrets := list (include "todo-lib.databaseSecret" .v) .v.global.jwtSecret -}}
{{- range $ref := .v.secrets.extra }}{{ $secrets = append $secrets $ref }}{{ end -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}-secret-reader
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames:
      {{- toYaml (uniq $secrets) | nindent 6 }}
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}-secret-reader
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}-secret-reader
subjects:
  - kind: ServiceAccount
    name: {{ if .v.serviceAccount.create }}{{ $name }}{{ else }}default{{ end }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}

{{- define "todo-lib.hpa" -}}
{{- $a := .v.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "todo-lib.name" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      {{- /* Scaling in moves Kafka partitions (a rebalance): not on every dip. */}}
      stabilizationWindowSeconds: 300
{{- end -}}

{{- define "todo-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "todo-lib.name" . }}
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "todo-lib.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/*
Who may reach a service: pods of this system on gRPC (Kafka runtime: direct calls) and on daprd's internal port
50002 (Dapr runtime: sidecar to sidecar), and the metrics scraper's namespace on daprd's metrics port. Egress is left
open: brokers, databases and identity providers live outside the namespace in a managed cluster.
*/}}
{{- define "todo-lib.networkPolicy" -}}
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
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: todo-chatbot
      ports:
        - port: 50051
          protocol: TCP
        - port: 50002
          protocol: TCP
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ .v.global.networkPolicy.metricsNamespace }}
      ports:
        - port: 9090
          protocol: TCP
{{- end -}}

{{/*
The unit's migrations before the new pods start: `todo-migrate <app_id>` as a hook Job. Hooks run before the
release's own objects exist, so its settings are written inline (not the ConfigMap) and its secrets come by
secretKeyRef even under Dapr (a Job has no sidecar: one would keep the Job from ever completing).
*/}}
{{- define "todo-lib.migrationJob" -}}
{{- $v := .v -}}
{{- $settings := fromYaml (include "todo-lib.settings" .) -}}
{{- $_ := unset $settings "TODO_DATABASE_URL" -}}
{{- $_ := unset $settings "TODO_JWT_SECRET" -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "todo-lib.name" . }}-migrate
  labels:
    {{- include "todo-lib.labels" . | nindent 4 }}
  annotations:
    helm.sh/hook: {{ $v.migration.hooks }}
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $v.migration.backoffLimit }}
  activeDeadlineSeconds: {{ $v.migration.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        {{- /* Not the service's selector labels: the Service and the budget must never count a migration pod. */}}
        app.kubernetes.io/name: {{ include "todo-lib.name" . }}-migrate
        app.kubernetes.io/instance: {{ .root.Release.Name }}
        app.kubernetes.io/part-of: todo-chatbot
        app.kubernetes.io/component: migration
      annotations:
        dapr.io/enabled: "false"
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        {{- include "todo-lib.podSecurityContext" . | nindent 8 }}
      containers:
        - name: migrate
          image: {{ include "todo-lib.image" . | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy | default $v.global.image.pullPolicy }}
          command: ["todo-migrate"]
          args:
            - {{ $v.appId | quote }}
          env:
            {{- range $name := keys $settings | sortAlpha }}
            - name: {{ $name }}
              value: {{ get $settings $name | toString | quote }}
            {{- end }}
            {{- include "todo-lib.secretEnv" (dict "v" $v "runtimeSecrets" true) | indent 12 }}
          resources:
            {{- toYaml $v.migration.resources | nindent 12 }}
          securityContext:
            {{- include "todo-lib.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end -}}
