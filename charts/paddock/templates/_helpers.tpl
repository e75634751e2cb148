{{/* Names and labels shared by every template. */}}

{{- define "paddock.name" -}}
{{- default "paddock" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "paddock.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "paddock.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "paddock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: paddock
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "paddock.operator.name" -}}
{{- printf "%s-operator" (include "paddock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.operator.selectorLabels" -}}
app.kubernetes.io/name: paddock-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "paddock.gateway.name" -}}
{{- printf "%s-gateway" (include "paddock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.gateway.selectorLabels" -}}
app.kubernetes.io/name: paddock-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
