{{/*
Chart name, truncated to 63 characters (the limit of a DNS label and of a label value).
*/}}
{{- define "paxos-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or <release> when the release name
already contains the chart name (so `helm install paxos-operator` gives "paxos-operator").
*/}}
{{- define "paxos-operator.fullname" -}}
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

{{/*
chart label value: name-version.
*/}}
{{- define "paxos-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "paxos-operator.labels" -}}
helm.sh/chart: {{ include "paxos-operator.chart" . }}
{{ include "paxos-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: paxos-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: never change them in an upgrade, a Deployment's selector is immutable.
*/}}
{{- define "paxos-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paxos-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "paxos-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "paxos-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a digest is given,
else repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "paxos-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "paxos-operator.image" -}}
{{- include "paxos-operator.imageRef" (list .Values.image .) }}
{{- end }}

{{- define "paxos-operator.nodeImage" -}}
{{- include "paxos-operator.imageRef" (list .Values.nodeImage .) }}
{{- end }}

{{/*
Checks of values that the JSON schema cannot express (relations between keys).
*/}}
{{- define "paxos-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "leaderElection.enabled=false needs replicaCount=1: several operators without a Lease would execute conflicting reconfiguration steps" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- fail "podDisruptionBudget.minAvailable must be less than replicaCount, or no operator pod could ever be evicted (node drains would hang)" }}
{{- end }}
{{- end }}
