package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPAnnouncementSpec says which LoadBalancer addresses are advertised to
// which BGP peers, from which nodes, and with which path attributes.
// +kubebuilder:validation:XValidation:rule="!has(self.communities) || self.communities.all(c, c.contains(':') || (has(self.communityAliases) && self.communityAliases.exists(a, a.name == c)))",message="communities: a name that is not numeric must be defined in communityAliases"
type BGPAnnouncementSpec struct {
	// IPPools names the pools whose addresses are advertised. With
	// IPPoolSelectors, matching either is enough; both empty: every pool.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	IPPools []string `json:"ipPools,omitempty"`

	// IPPoolSelectors select pools by their labels.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	IPPoolSelectors []metav1.LabelSelector `json:"ipPoolSelectors,omitempty"`

	// PeerSelectors select the BGPPeers to advertise to by their labels
	// (matching any one is enough); empty: every peer.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	PeerSelectors []metav1.LabelSelector `json:"peerSelectors,omitempty"`

	// NodeSelectors pick the nodes that advertise (matching any one is
	// enough); empty: every node. Nodes labelled
	// node.kubernetes.io/exclude-from-external-load-balancers never do.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Communities are attached to the advertised routes: standard
	// ("65000:100", two numbers 0-65535), large ("65000:1:2", three numbers
	// 0-4294967295), or the name of an entry in CommunityAliases.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Communities []Community `json:"communities,omitempty"`

	// CommunityAliases give names to community values, so Communities can
	// say "no-export-upstream" rather than "65000:666".
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	CommunityAliases []CommunityAlias `json:"communityAliases,omitempty"`

	// LocalPref is the LOCAL_PREF attribute of the advertised routes
	// (0-4294967295; routers prefer higher). It is sent to iBGP peers only,
	// as RFC 4271 requires. Empty: not set, the router applies its default
	// (usually 100).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	LocalPref *int64 `json:"localPref,omitempty"`

	// AggregationLength is the prefix length IPv4 addresses are advertised
	// with: 32 advertises each address alone; shorter advertises the
	// prefix that holds it (e.g. 24: the /24 around each address), which
	// routers can hold fewer of.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	// +kubebuilder:default=32
	// +optional
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is AggregationLength for IPv6 addresses.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	// +kubebuilder:default=128
	// +optional
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// Community is a BGP community: standard ("65000:100"), large
// ("65000:1:2"), or the name of an alias (no colon).
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="self.contains(':') ? ((self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && self.split(':').all(p, int(p) <= 65535)) || (self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(p, int(p) <= 4294967295))) : self.matches('^[A-Za-z][A-Za-z0-9_.-]*$')",message="must be a standard community (two numbers 0-65535, e.g. 65000:100), a large community (three numbers 0-4294967295, e.g. 65000:1:2) or an alias name (a letter, then letters, digits, '-', '_' or '.')"
type Community string

// CommunityAlias names a community value.
type CommunityAlias struct {
	// Name is what Communities use to refer to the value.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_.-]*$`
	Name string `json:"name"`

	// Value is a standard ("65000:100") or large ("65000:1:2") community.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="(self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && self.split(':').all(p, int(p) <= 65535)) || (self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(p, int(p) <= 4294967295))",message="must be a standard community (two numbers 0-65535, e.g. 65000:100) or a large community (three numbers 0-4294967295, e.g. 65000:1:2)"
	Value string `json:"value"`
}

// BGPAnnouncementStatus is what the controller found.
type BGPAnnouncementStatus struct {
	// Conditions: Ready, written by berth-controller: True (Accepted) when
	// its selectors and communities are valid and it announces existing
	// IPPools to existing BGPPeers, naming them; False with
	// InvalidAnnouncement, NoPools or NoPeers.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// BGPAnnouncement advertises LoadBalancer addresses to BGP peers.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpa
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAnnouncementSpec   `json:"spec,omitempty"`
	Status BGPAnnouncementStatus `json:"status,omitempty"`
}

// BGPAnnouncementList is a list of BGPAnnouncements.
// +kubebuilder:object:root=true
type BGPAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAnnouncement `json:"items"`
}
