{{/* Names, labels and the derived values every template shares. */}}

{{- define "egress-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "egress-guard.fullname" -}}
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

{{- define "egress-guard.controllerName" -}}
{{- printf "%s-controller" (include "egress-guard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "egress-guard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "egress-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels; "component" is webhook or controller. Call with (dict "ctx" . "component" "webhook"). */}}
{{- define "egress-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egress-guard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "egress-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "egress-guard.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "egress-guard.fullname" .)) .Values.policyConfigMap.name }}
{{- end }}

{{- define "egress-guard.tlsSecret" -}}
{{- if and (not .Values.certManager.enabled) (eq .Values.certs.mode "existing") }}
{{- required "certs.existing.secretName is required with certs.mode=existing" .Values.certs.existing.secretName }}
{{- else }}
{{- printf "%s-tls" (include "egress-guard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Kubernetes user name of the controller: what the policy's controller.users must list. */}}
{{- define "egress-guard.controllerUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "egress-guard.controllerName" .) }}
{{- end }}

{{/* Namespaces never gated: the configured ones plus the release namespace, as a JSON list. */}}
{{- define "egress-guard.excludedNamespaces" -}}
{{- append .Values.excludedNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}

{{/* DNS names the API server may use to reach the webhook Service. */}}
{{- define "egress-guard.serviceHosts" -}}
{{- $svc := include "egress-guard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson }}
{{- end }}

{{/* Refuse value combinations that would install a webhook nobody can call. */}}
{{- define "egress-guard.validate" -}}
{{- if and .Values.certManager.enabled (eq .Values.certs.mode "existing") }}
{{- fail "certManager.enabled and certs.mode=existing are exclusive: choose one certificate source" }}
{{- end }}
{{- if and (not .Values.certManager.enabled) (eq .Values.certs.mode "existing") (not .Values.certs.existing.caBundle) }}
{{- fail "certs.existing.caBundle (PEM) is required with certs.mode=existing: the API server must trust the webhook" }}
{{- end }}
{{- if has .Release.Namespace (list "default") }}
{{- fail "install egress-guard in a namespace of its own: the release namespace is exempt from the webhooks" }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by both Deployments. Call with (dict "ctx" . "component" "webhook" "values" .Values.webhook). */}}
{{- define "egress-guard.podSpecCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
  {{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
  {{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "egress-guard.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 14 }}
  {{- end }}
{{- end }}

{{/* Pod labels: selector labels, plus no Istio sidecar (the API server calls the webhook
directly; the release namespace is outside the mesh policy). */}}
{{- define "egress-guard.podLabels" -}}
{{- include "egress-guard.selectorLabels" (dict "ctx" .ctx "component" .component) }}
sidecar.istio.io/inject: "false"
{{- with .values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
