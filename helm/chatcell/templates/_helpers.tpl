{{/* Names and labels shared by the chart's templates. */}}

{{- define "chatcell.fullname" -}}
{{- printf "%s-chatcell-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatcell.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chatcell.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chatcell.selectorLabels" -}}
app.kubernetes.io/name: chatcell-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chatcell.labels" -}}
{{ include "chatcell.selectorLabels" . }}
app.kubernetes.io/part-of: cellchat
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "chatcell.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespaces the operator watches: the listed ones, or the release's own. */}}
{{- define "chatcell.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," .Values.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}
