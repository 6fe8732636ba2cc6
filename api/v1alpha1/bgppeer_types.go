package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPPeerSpec describes a router that berth-agent opens a BGP session to,
// and which nodes do.
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.address) || ip(self.sourceAddress).family() == ip(self.address).family()",message="sourceAddress must be of the same family (IPv4 or IPv6) as address"
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be less than holdTime (usually a third of it)"
// +kubebuilder:validation:XValidation:rule="!has(self.ttlSecurityHops) || (!has(self.ebgpMultiHopTTL) && !(has(self.ebgpMultiHop) && self.ebgpMultiHop))",message="ttlSecurityHops (GTSM: packets leave with TTL 255) and ebgpMultiHop/ebgpMultiHopTTL (packets leave with that TTL) cannot both be set; use ttlSecurityHops alone for a router some hops away"
type BGPPeerSpec struct {
	// Address is the router's IP address, IPv4 or IPv6 ("192.0.2.1",
	// "2001:db8::1"). IPv4 LoadBalancer addresses are announced over IPv4
	// sessions and IPv6 ones over IPv6 sessions.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address, e.g. 192.0.2.1 or 2001:db8::1"
	Address string `json:"address"`

	// Port is the router's BGP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=179
	// +optional
	Port int32 `json:"port,omitempty"`

	// PeerASN is the router's autonomous system number (1 to 4294967295).
	// Equal to LocalASN: an iBGP session; different: eBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`

	// LocalASN is the autonomous system number the nodes speak as.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	LocalASN int64 `json:"localASN"`

	// HoldTime is how long without a message from the router before the
	// session is declared down and its routes withdrawn: whole seconds from
	// 3s to 65535s. The router may negotiate it lower. 0s (no hold timer
	// and no keepalives, RFC 4271) is not supported: the embedded speaker
	// (GoBGP) would run it as 90s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('3s') && duration(self) <= duration('65535s')",message="holdTime must be from 3s to 65535s (0s, no hold timer, is not supported: Berth's speaker would run it as 90s)"
	// +kubebuilder:default="90s"
	// +optional
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime is how often a keepalive is sent, in whole seconds from
	// 1s; it must be less than HoldTime. Empty: a third of the hold time.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="keepaliveTime must be at least 1s"
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// PasswordSecret names the key of a Secret that holds the TCP MD5
	// password (RFC 2385) the router expects. The Secret lives in the
	// namespace berth-agent runs in (berth-system by default). Empty: no
	// password.
	// +optional
	PasswordSecret *SecretKeyRef `json:"passwordSecret,omitempty"`

	// EBGPMultiHop lets an eBGP session reach a router that is not on a
	// subnet the node is directly connected to: packets leave with a TTL of
	// 255 instead of 1 (or EBGPMultiHopTTL when set).
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`

	// EBGPMultiHopTTL is the TTL an eBGP session's packets leave with, so
	// a router that many hops away is reached and no farther: 1 (a
	// directly connected router, the eBGP default) to 255. Setting it
	// turns multihop on whatever ebgpMultiHop says; ebgpMultiHop: true
	// alone is 255. iBGP sessions leave with the system's TTL either way.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	// +optional
	EBGPMultiHopTTL *int32 `json:"ebgpMultiHopTTL,omitempty"`

	// TTLSecurityHops turns on the Generalized TTL Security Mechanism
	// (GTSM, RFC 5082) for the session: packets leave with TTL 255, and
	// the node accepts only those that arrive with a TTL of at least 256
	// minus this count, so a forged packet from farther away is dropped
	// by the kernel. 1: the router is directly connected. The router must
	// have it on too (FRR "ttl-security hops", BIRD "ttl security on").
	// Not with ebgpMultiHop or ebgpMultiHopTTL.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=254
	// +optional
	TTLSecurityHops *int32 `json:"ttlSecurityHops,omitempty"`

	// ConnectRetryTime is how long the node waits between attempts to
	// connect while the session is down: whole seconds from 2s (the
	// embedded speaker's least) to 3600s. Unset: 2s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('2s') && duration(self) <= duration('3600s')",message="connectRetryTime must be from 2s to 3600s"
	// +optional
	ConnectRetryTime *metav1.Duration `json:"connectRetryTime,omitempty"`

	// IdleHoldTime is how long the node stays Idle after an Established
	// session goes down (the router restarted, the hold timer expired)
	// before it connects again (RFC 4271's IdleHoldTimer): whole seconds
	// from 0s to 3600s. Unset: 0s, so a router whose BGP daemon restarts
	// is connected to again at the next connect retry. A session closed
	// on maxPrefixes stays down all the same.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('3600s')",message="idleHoldTime must be from 0s to 3600s"
	// +optional
	IdleHoldTime *metav1.Duration `json:"idleHoldTime,omitempty"`

	// GracefulRestart (RFC 4724) asks the router to keep the nodes' routes
	// for a while when berth-agent restarts, so an upgrade does not drop
	// traffic.
	// +optional
	GracefulRestart *BGPGracefulRestart `json:"gracefulRestart,omitempty"`

	// NodeSelector picks the nodes that peer with this router; empty: every
	// node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// SourceAddress is the local address sessions are opened from; it must
	// be of the same family as Address and held by the node, so it is
	// usually set with a NodeSelector that picks one node. Empty: the
	// address of the node's route to the router.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address, e.g. 192.0.2.2 or 2001:db8::2"
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`

	// MaxPrefixes is the most prefixes a node accepts from the router in
	// one session (RFC 4486). When the router sends more, the node closes
	// the session with a Cease NOTIFICATION (maximum number of prefixes
	// reached) and leaves it down until maxPrefixes changes (or the agent
	// restarts); its status.nodes entry has the MaxPrefixesReached
	// condition. Unset: 10000, more than the pod ranges of a cluster of
	// 5,000 nodes and far less than a full Internet table. 0: no limit.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	MaxPrefixes *int64 `json:"maxPrefixes,omitempty"`
}

// SecretKeyRef names one key of a Secret in berth-agent's namespace.
type SecretKeyRef struct {
	// Name is the Secret's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Key is the key in the Secret's data whose value is used.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// BGPGracefulRestart configures BGP graceful restart for a peer.
type BGPGracefulRestart struct {
	// Enabled advertises the graceful restart capability to the router.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// RestartTime is how long the router should keep the node's routes
	// after the session drops, from 1s to 4095s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="restartTime must be from 1s to 4095s"
	// +kubebuilder:default="120s"
	// +optional
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPSessionState is the state of a BGP session in the RFC 4271 finite
// state machine.
// +kubebuilder:validation:Enum=Idle;Connect;Active;OpenSent;OpenConfirm;Established
type BGPSessionState string

// BGP session states.
const (
	BGPSessionIdle        BGPSessionState = "Idle"
	BGPSessionConnect     BGPSessionState = "Connect"
	BGPSessionActive      BGPSessionState = "Active"
	BGPSessionOpenSent    BGPSessionState = "OpenSent"
	BGPSessionOpenConfirm BGPSessionState = "OpenConfirm"
	BGPSessionEstablished BGPSessionState = "Established"
)

// Condition types and reasons of a BGPPeer's status.nodes entries.
const (
	// BGPConditionConfigured is False when the node leaves the peer out;
	// its reason says why (ReasonAddressInClusterRange,
	// ReasonInvalidPeer).
	BGPConditionConfigured = "Configured"
	// BGPConditionRoutesRefused is True while the node refuses routes
	// the router sends (ReasonNextHopNotOwner, ReasonInsidePodRange).
	BGPConditionRoutesRefused = "RoutesRefused"
	// BGPConditionMaxPrefixesReached is True when the router sent more
	// than maxPrefixes and the session was closed.
	BGPConditionMaxPrefixesReached = "MaxPrefixesReached"
	// BGPConditionRoutesAcknowledged says whether what the node sent
	// reached the router, which Established alone does not: True when
	// the router's TCP acknowledged every byte of the session's UPDATEs;
	// False when bytes stayed unacknowledged for 2 s (the router drops
	// the node's segments, e.g. TTL security one hop too strict: the
	// routes advertised did not arrive); Unknown while not Established or
	// in between.
	BGPConditionRoutesAcknowledged = "RoutesAcknowledged"

	ReasonPeerConfigured        = "PeerConfigured"
	ReasonInvalidPeer           = "InvalidPeer"
	ReasonAddressInClusterRange = "AddressInClusterRange"
	ReasonNoneRefused           = "NoneRefused"
	ReasonNextHopNotOwner       = "NextHopNotOwner"
	ReasonInsidePodRange        = "InsidePodRange"
	ReasonWithinLimit           = "WithinLimit"
	ReasonMaxPrefixesReached    = "MaxPrefixesReached"
	ReasonAcknowledged          = "Acknowledged"
	ReasonUnacknowledged        = "Unacknowledged"
	ReasonAckPending            = "Pending"
	ReasonNotEstablished        = "NotEstablished"
	ReasonAckUnobserved         = "Unobserved"
)

// BGPPeerNodeStatus is one node's session with the peer. Each berth-agent
// writes only its own entry, with server-side apply under a field manager
// of its own.
type BGPPeerNodeStatus struct {
	// Node is the node's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`

	// State is the session's state; Established means routes are
	// exchanged.
	State BGPSessionState `json:"state"`

	// LastError is why the session last failed (a NOTIFICATION received or
	// sent, a connection error), empty if it has not.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	LastError string `json:"lastError,omitempty"`

	// PrefixesAdvertised counts the prefixes the node advertises to the
	// router.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PrefixesAdvertised int32 `json:"prefixesAdvertised,omitempty"`

	// PrefixesAccepted counts the prefixes received from the router that
	// the node accepted.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PrefixesAccepted int32 `json:"prefixesAccepted,omitempty"`

	// PrefixesRefused counts the prefixes received from the router that the
	// node refuses (pod network mode bgp): another node's pod range whose
	// next hop is not that node's address, or a route inside a pod range.
	// The RoutesRefused condition names them.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PrefixesRefused int32 `json:"prefixesRefused,omitempty"`

	// Conditions of this node's session: Configured (False when the node
	// does not run the peer, with the reason), RoutesRefused,
	// MaxPrefixesReached and RoutesAcknowledged.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastTransition is when the session entered its current state.
	// +optional
	LastTransition metav1.Time `json:"lastTransition,omitempty"`

	// Updated is when the agent last wrote this entry; an old one means the
	// node's agent is not running.
	// +optional
	Updated metav1.Time `json:"updated,omitempty"`
}

// BGPPeerStatus is what the controller and the agents observed of the peer.
type BGPPeerStatus struct {
	// Conditions: Ready, written by berth-controller: True (Valid) when the
	// spec is one the speaker can run and no node leaves the peer out,
	// its message counting the nodes whose session is Established; False
	// with InvalidPeer (the spec) or NodesLeaveOut (a node's entry says
	// Configured False, e.g. its password Secret is missing), naming the
	// nodes and why.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Nodes has one entry per node that peers with the router, written by
	// that node's agent.
	// +kubebuilder:validation:MaxItems=5000
	// +listType=map
	// +listMapKey=node
	// +optional
	Nodes []BGPPeerNodeStatus `json:"nodes,omitempty"`
}

// BGPPeer is a router the nodes open BGP sessions to, to announce
// LoadBalancer addresses.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpp
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=`.spec.localASN`
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.port`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
