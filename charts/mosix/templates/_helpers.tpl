{{/* The chart's name, or nameOverride. */}}
{{- define "mosix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: fullnameOverride, else RELEASE (if it holds the chart name) or RELEASE-NAME. */}}
{{- define "mosix.fullname" -}}
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

{{- define "mosix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "mosix.labels" -}}
helm.sh/chart: {{ include "mosix.chart" . }}
app.kubernetes.io/name: {{ include "mosix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mosix
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "mosix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mosix.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: (dict "ctx" $ "component" "agent"). */}}
{{- define "mosix.componentLabels" -}}
{{ include "mosix.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mosix.operator.fullname" -}}
{{- printf "%s-operator" (include "mosix.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mosix.agent.fullname" -}}
{{- printf "%s-agent" (include "mosix.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mosix.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "mosix.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mosix.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "mosix.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The agents' TLS Secret: ca.crt, tls.crt, tls.key. */}}
{{- define "mosix.tls.secretName" -}}
{{- default (printf "%s-tls" (include "mosix.agent.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The headless Service of the agents, and so the DNS names in their certificate. */}}
{{- define "mosix.agent.dnsNames" -}}
{{- $svc := include "mosix.agent.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list "mosix-agent" $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "*.%s.%s.svc" $svc $ns) | toJson }}
{{- end }}

{{/* image reference: (dict "image" .Values.operator.image "ctx" $). */}}
{{- define "mosix.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
