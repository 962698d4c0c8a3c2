{{/* Names and labels shared by every object of the release. */}}
{{- define "oneoff.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oneoff.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oneoff.labels" -}}
{{ include "oneoff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* PostgreSQL: a URL given here or a Secret of the user's; otherwise SQLite on a volume. */}}
{{- define "oneoff.usesPostgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "oneoff.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "oneoff.fullname" .)) -}}
{{- end -}}

{{/* Settings that cannot work together are refused when rendering, not found in production. */}}
{{- define "oneoff.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "oneoff.usesPostgres" .)) -}}
{{- fail "replicaCount above 1 needs PostgreSQL: set database.url or database.existingSecret (one SQLite file cannot be shared by several servers)" -}}
{{- end -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount must be at least 1" -}}
{{- end -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) 31 -}}
{{- fail "terminationGracePeriodSeconds must be above drain (30 s by default) plus the longest job grace, or the kubelet kills running jobs mid-drain" -}}
{{- end -}}
{{- end -}}
