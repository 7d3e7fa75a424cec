{{/* The operator's namespace. */}}
{{- define "kaudit.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name -}}
{{- end -}}

{{/* Labels Helm adds to every object, beside each object's own. */}}
{{- define "kaudit.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: kaudit
{{- end -}}
