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

{{- define "paddock.cni.name" -}}
{{- printf "%s-cni" (include "paddock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.cni.selectorLabels" -}}
app.kubernetes.io/name: paddock-cni
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "paddock.gateway.name" -}}
{{- printf "%s-gateway" (include "paddock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.gateway.selectorLabels" -}}
app.kubernetes.io/name: paddock-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "paddock.redis.name" -}}
{{- printf "%s-redis" (include "paddock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.redis.selectorLabels" -}}
app.kubernetes.io/name: paddock-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "paddock.test.selectorLabels" -}}
app.kubernetes.io/name: paddock-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* repository:tag of an image value. */ -}}
{{- define "paddock.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- /*
The Secret and key that hold the gateway's Redis URL: the chart's own (in-chart Redis, or
redis.external.url), or the user's redis.external.existingSecret. Fails, naming the values, when
Redis is disabled and no external one is given.
*/ -}}
{{- define "paddock.redis.urlSecret" -}}
{{- $redis := .Values.redis -}}
{{- if $redis.enabled -}}
name: {{ include "paddock.redis.name" . }}
key: url
{{- else if $redis.external.url -}}
name: {{ include "paddock.redis.name" . }}-external
key: url
{{- else if $redis.external.existingSecret.name -}}
name: {{ $redis.external.existingSecret.name }}
key: {{ $redis.external.existingSecret.key }}
{{- else -}}
{{- fail "redis.enabled is false: set redis.external.url or redis.external.existingSecret.name to your own Redis" -}}
{{- end -}}
{{- end -}}

{{- /* The port of the external Redis, for the gateway's NetworkPolicy. */ -}}
{{- define "paddock.redis.externalPort" -}}
{{- $port := "" -}}
{{- if .Values.redis.external.url -}}
{{- $port = regexFind "[0-9]+$" (regexFind ":[0-9]+$" (urlParse .Values.redis.external.url).host) -}}
{{- end -}}
{{- default .Values.redis.external.port $port -}}
{{- end -}}

{{- /* The restricted security context every paddock container runs with. */ -}}
{{- define "paddock.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- /* NetworkPolicy egress rules: DNS anywhere, and the API server by address (see networkpolicies.yaml). */ -}}
{{- define "paddock.netpol.dns" -}}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}
{{- define "paddock.netpol.apiServer" -}}
- to:
    {{- range .Values.networkPolicy.apiServer.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}
