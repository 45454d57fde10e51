{{- define "kubetune.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubetune.labels" -}}
app.kubernetes.io/name: kubetune
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubetune.selector" -}}
app.kubernetes.io/name: kubetune
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubetune.rules" -}}
# Exactly what the operator reads and writes (docs/operator.md, "RBAC"); no Secret permission at all.
- apiGroups: [kubetune.io]
  resources: [finetunejobs, adapters]
  verbs: [get, list, watch, patch, create, update]
- apiGroups: [kubetune.io]
  resources: [finetunejobs/status, adapters/status]
  verbs: [get, patch]
- apiGroups: [kubetune.io]
  resources: [finetunejobs/finalizers, adapters/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Children are written with server-side apply and never read back: create + patch, no get.
- apiGroups: [""]
  resources: [serviceaccounts, services]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, patch]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
# Kueue's Workload of a queued run says why it waits or that it was preempted (read only).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list, watch]
{{- end -}}

{{- /* Labels of a monitoring object: the chart's, monitoring.labels, then the object's own labels. */ -}}
{{- define "kubetune.monitoringLabels" -}}
{{ include "kubetune.labels" .root }}
{{- with merge (deepCopy (.own | default dict)) (deepCopy (.root.Values.monitoring.labels | default dict)) }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubetune.trainerPolicy" -}}
{{- printf "%s-trainer-status" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
