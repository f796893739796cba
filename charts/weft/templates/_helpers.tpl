{{/* Namespace of the control plane. */}}
{{- define "weft.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "weft.labels" -}}
app.kubernetes.io/name: weft
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of the controller's pods. */}}
{{- define "weft.selector" -}}
app.kubernetes.io/name: weft
app.kubernetes.io/component: controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of the Secret with your webhook serving certificate (`webhook.caBundle` set). */}}
{{- define "weft.webhookSecret" -}}
{{- .Values.webhook.tlsSecretName | default "weft-webhook-tls" -}}
{{- end -}}

{{/* Whether the controller issues the webhooks' certificate and patches their caBundle. */}}
{{- define "weft.webhookCertFromCa" -}}
{{- if not .Values.webhook.caBundle }}true{{ end -}}
{{- end -}}

{{/* Names of the webhook configurations (the controller patches them by name). */}}
{{- define "weft.validatorConfig" -}}
weft-validator-{{ include "weft.namespace" . }}
{{- end -}}
{{- define "weft.injectorConfig" -}}
weft-sidecar-injector-{{ include "weft.namespace" . }}
{{- end -}}
