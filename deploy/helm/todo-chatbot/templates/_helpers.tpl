{{/* Dapr app ids (dashed) of the enabled services, without the gateway. */}}
{{- define "todo-chatbot.serviceApps" -}}
{{- $apps := list -}}
{{- range $chart := list "task-svc" "reminder-svc" "recurrence-svc" "notify-svc" "audit-svc" "chat-svc" -}}
{{- if (index $.Values $chart).enabled -}}
{{- $apps = append $apps $chart -}}
{{- end -}}
{{- end -}}
{{- toJson $apps -}}
{{- end -}}

{{- define "todo-chatbot.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: todo-chatbot
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
