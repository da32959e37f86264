{{- define "tamma.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tamma.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tamma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "tamma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: (dict "root" $ "component" "server") */}}
{{- define "tamma.selector" -}}
app.kubernetes.io/name: {{ include "tamma.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tamma.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "tamma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "tamma.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "tamma.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" (include "tamma.fullname" .)) }}
{{- end -}}

{{- define "tamma.hasSecret" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.values -}}true{{- end -}}
{{- end -}}

{{/* settings and secrets every Tamma container reads */}}
{{- define "tamma.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "tamma.fullname" . }}
{{- if include "tamma.hasSecret" . }}
  - secretRef:
      name: {{ include "tamma.secretName" . }}
{{- end }}
{{- end -}}

{{/* env items for Temporal's TLS and API key (a list's items, under a container's env:) */}}
{{- define "tamma.temporalEnv" -}}
{{- with .Values.temporal }}
{{- if or .tls.enabled .tls.clientCertificate .tls.serverCA .apiKey.existingSecret }}
- name: TAMMA_TEMPORAL__TLS
  value: "true"
{{- if .tls.serverName }}
- name: TAMMA_TEMPORAL__TLS_SERVER_NAME
  value: {{ .tls.serverName | quote }}
{{- end }}
{{- if .tls.clientCertificate }}
- name: TAMMA_TEMPORAL__TLS_CLIENT_CERT
  value: /etc/tamma/temporal-tls/tls.crt
- name: TAMMA_TEMPORAL__TLS_CLIENT_KEY
  value: /etc/tamma/temporal-tls/tls.key
{{- end }}
{{- if .tls.serverCA }}
- name: TAMMA_TEMPORAL__TLS_SERVER_CA
  value: /etc/tamma/temporal-tls/ca.crt
{{- end }}
{{- if .apiKey.existingSecret }}
- name: TAMMA_TEMPORAL__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .apiKey.existingSecret }}
      key: {{ .apiKey.key }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tamma.tlsMount" -}}
{{- if .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  mountPath: /etc/tamma/temporal-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tamma.tlsVolume" -}}
{{- if .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  secret:
    secretName: {{ .Values.temporal.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}
