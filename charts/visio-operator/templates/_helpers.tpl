{{/* Labels on every object of the chart. */}}
{{- define "visio-operator.labels" -}}
app.kubernetes.io/name: visio-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The manager Pods. */}}
{{- define "visio-operator.selectorLabels" -}}
app.kubernetes.io/name: visio-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Names of the webhook objects, shared by the Deployment's flags. */}}
{{- define "visio-operator.webhookService" -}}visio-operator-webhook{{- end }}
{{- define "visio-operator.webhookConfiguration" -}}visio-operator{{- end }}
{{- define "visio-operator.webhookSecret" -}}visio-operator-webhook-cert{{- end }}
{{- define "visio-operator.certDir" -}}/var/run/visio-operator/webhook-certs{{- end }}

{{- define "visio-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
