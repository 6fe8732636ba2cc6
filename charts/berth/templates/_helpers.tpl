{{/* Labels every object of the release carries. */}}
{{- define "berth.labels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of a component: include with (list $ "controller"). */}}
{{- define "berth.selector" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "berth.componentLabels" -}}
{{ include "berth.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "berth.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* berth-controller's Gateway/Ingress part (--gateway) runs for either switch. */}}
{{- define "berth.gatewayOn" -}}
{{- if or .Values.gateway.enabled .Values.ingress.enabled }}true{{ end -}}
{{- end -}}

{{- define "berth.l2On" -}}
{{- if and .Values.loadBalancer.enabled .Values.loadBalancer.l2.enabled }}true{{ end -}}
{{- end -}}

{{/* The BGP speaker runs for LoadBalancer addresses, and for pod ranges in mode bgp. */}}
{{- define "berth.bgpOn" -}}
{{- if or (and .Values.loadBalancer.enabled .Values.loadBalancer.bgp.enabled) (and .Values.podNetwork.enabled (eq .Values.podNetwork.mode "bgp")) }}true{{ end -}}
{{- end -}}

{{- define "berth.netpolOn" -}}
{{- if and .Values.podNetwork.enabled .Values.networkPolicy.enabled }}true{{ end -}}
{{- end -}}

{{/* The agent runs when it has anything to do on the nodes. */}}
{{- define "berth.agentOn" -}}
{{- if or .Values.podNetwork.enabled .Values.serviceProxy.enabled (include "berth.l2On" .) (include "berth.bgpOn" .) }}true{{ end -}}
{{- end -}}

{{/*
Checks across values that the schema cannot express; each message says what to change.
*/}}
{{- define "berth.validate" -}}
{{- $v := .Values -}}
{{- if and (include "berth.gatewayOn" .) (not $v.loadBalancer.enabled) -}}
{{- fail "gateway.enabled and ingress.enabled need loadBalancer.enabled: the Envoy fleets' Services are of class berth.dev/lb, which only Berth gives addresses to and announces. Set loadBalancer.enabled=true, or gateway.enabled=false and ingress.enabled=false" -}}
{{- end -}}
{{- if and (not $v.loadBalancer.enabled) (or $v.loadBalancer.ipPools $v.loadBalancer.l2Announcements $v.loadBalancer.bgpAnnouncements) -}}
{{- fail "loadBalancer.ipPools, l2Announcements and bgpAnnouncements are set but loadBalancer.enabled is false: remove them or set loadBalancer.enabled=true" -}}
{{- end -}}
{{- if and $v.serviceProxy.enabled (not $v.kubernetesAPI.host) -}}
{{- fail "serviceProxy.enabled replaces kube-proxy, so the agents cannot reach the API server through the kubernetes Service: set kubernetesAPI.host (and kubernetesAPI.port) to the control-plane endpoint, e.g. the address given to kubeadm init" -}}
{{- end -}}
{{- if and $v.podNetwork.enabled (eq $v.podNetwork.mode "bgp") (not $v.loadBalancer.bgp.enabled) -}}
{{- fail "podNetwork.mode=bgp needs the BGP speaker: set loadBalancer.bgp.enabled=true and give loadBalancer.bgpPeers" -}}
{{- end -}}
{{- if and (include "berth.l2On" .) (not $v.loadBalancer.l2.keySecret.create) (not $v.loadBalancer.l2.keySecret.name) -}}
{{- fail "loadBalancer.l2 needs a heartbeat key: set loadBalancer.l2.keySecret.create=true, or keySecret.name to an existing Secret" -}}
{{- end -}}
{{- end -}}

{{/*
A generated role (files/rbac/<component>.yaml, copied from config/rbac by
hack/chart-files.sh) with its rules exactly as generated, in the release's
namespace, bound to the component's ServiceAccount.
*/}}
{{- define "berth.rbac" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $file := printf "files/rbac/%s.yaml" $component -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($root.Files.Get $file) -1 }}
{{- $role := fromYaml $doc }}
{{- if $role }}
{{- if not (has $role.kind (list "ClusterRole" "Role")) }}
{{- fail (printf "%s: unexpected kind %s" $file $role.kind) }}
{{- end }}
{{- $binding := ternary "ClusterRoleBinding" "RoleBinding" (eq $role.kind "ClusterRole") }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $role.kind }}
metadata:
  name: {{ $role.metadata.name }}
  {{- if eq $role.kind "Role" }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "berth.componentLabels" (list $root $component) | nindent 4 }}
rules:
{{ toYaml $role.rules }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $binding }}
metadata:
  name: {{ $role.metadata.name }}
  {{- if eq $role.kind "Role" }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "berth.componentLabels" (list $root $component) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $role.kind }}
  name: {{ $role.metadata.name }}
subjects:
  - kind: ServiceAccount
    name: berth-{{ $component }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end -}}
