{{/* Names and labels shared by the mlhub chart's own objects. */}}

{{/* The publisher's Service name is fixed: the JupyterHub values (hub.services, the
     notebooks' MLHUB_PUBLISHER_URL, singleuser egress) name it, and they cannot be templated. */}}
{{- define "mlhub.publisher.name" -}}mlhub-publisher{{- end }}

{{/* The JupyterHub chart's object names: unprefixed unless jupyterhub.fullnameOverride is set. */}}
{{- define "mlhub.jupyterhub.prefix" -}}
{{- with .Values.jupyterhub.fullnameOverride }}{{ . }}-{{ end }}
{{- end }}

{{- define "mlhub.labels" -}}
app.kubernetes.io/name: mlhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "mlhub.publisher.selector" -}}
app.kubernetes.io/name: mlhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: publisher
{{- end }}
