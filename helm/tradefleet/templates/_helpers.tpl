{{/*
Names and labels shared by every template. Names are cut at 63 characters (DNS label limit) and
never end in '-'.
*/}}

{{- define "tradefleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tradefleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-<component>, within 63 characters. */}}
{{- define "tradefleet.componentName" -}}
{{- printf "%s-%s" (include "tradefleet.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "tradefleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. Call with (dict "root" $ "component" "operator"). */}}
{{- define "tradefleet.labels" -}}
helm.sh/chart: {{ include "tradefleet.chart" .root }}
{{ include "tradefleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tradefleet
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The immutable subset used in selectors: never add a label here after a release. */}}
{{- define "tradefleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tradefleet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The labels the operator puts on every bot pod (contract with tradingbot_operator): NetworkPolicies
and the PodMonitor select bots by these, never by release labels (bots are not Helm objects).
*/}}
{{- define "tradefleet.botSelectorLabels" -}}
{{- toYaml .Values.bots.podLabels -}}
{{- end -}}

{{- define "tradefleet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "tradefleet.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion, or @digest. */}}
{{- define "tradefleet.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches: the release namespace unless told otherwise. */}}
{{- define "tradefleet.watchNamespaces" -}}
{{- if .Values.operator.watch.namespaces -}}
{{- toJson .Values.operator.watch.namespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* Secret names the bots read (key `url`): chart-made, or the user's own. */}}
{{- define "tradefleet.storeSecretName" -}}
{{- if and (not .Values.mongodb.enabled) .Values.externalMongodb.existingSecret -}}
{{- .Values.externalMongodb.existingSecret -}}
{{- else -}}
{{- .Values.bots.storeSecretName -}}
{{- end -}}
{{- end -}}

{{- define "tradefleet.redisSecretName" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecret -}}
{{- else -}}
{{- .Values.bots.redisSecretName -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when bots get a store / Redis at all. */}}
{{- define "tradefleet.hasStore" -}}
{{- if or .Values.mongodb.enabled .Values.externalMongodb.url .Values.externalMongodb.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "tradefleet.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.url .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
A password that survives upgrades: the value from the values file if given, else the one already
in the cluster's Secret (lookup), else a new random one. `lookup` answers nothing under
`helm template`/--dry-run, so those render a fresh random value: expected, never applied.
Call with (dict "root" $ "secret" NAME "key" KEY "value" VALUE).
*/}}
{{- define "tradefleet.persistentPassword" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey (default dict $existing.data) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security defaults shared by every workload the chart runs. */}}
{{- define "tradefleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tradefleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}
