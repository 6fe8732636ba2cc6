package lab

// Berth runs in the lab as the chart installs it (helm.go): berth-controller
// and every berth-agent are pods of the chart's Deployment and DaemonSet,
// running as the chart's ServiceAccounts with the chart's roles.

// Namespace is Berth's namespace: the ServiceAccounts, the controller's
// leader lease and xDS CA, the Envoy fleets, the heartbeat key and BGP
// password Secrets the agents read by name.
const Namespace = "berth-system"

// The chart's ServiceAccounts, one per component.
const (
	ControllerServiceAccount = "berth-controller"
	AgentServiceAccount      = "berth-agent"
)

// ServiceAccountUser is the user name a ServiceAccount of Namespace
// authenticates as (what a token of it says).
func ServiceAccountUser(sa string) string { return "system:serviceaccount:" + Namespace + ":" + sa }
