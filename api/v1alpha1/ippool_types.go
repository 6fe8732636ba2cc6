package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPPoolSpec says which addresses a pool holds and which Services may use it.
type IPPoolSpec struct {
	// Addresses are CIDRs ("192.0.2.0/24", "2001:db8::/120") and inclusive
	// ranges ("192.0.2.10-192.0.2.20"), IPv4 and IPv6.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Addresses []Address `json:"addresses"`

	// AutoAssign: when false, only Services that name this pool (annotation
	// berth.dev/ip-pool) or one of its addresses get an address from it.
	// +kubebuilder:default=true
	// +optional
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some
	// old client stacks mistake for network or broadcast addresses.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// ServiceAllocation restricts which Services may use the pool and
	// orders pools for automatic assignment.
	// +optional
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
}

// Address is a CIDR or a first-last range of one family.
// +kubebuilder:validation:MaxLength=100
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family())",message="must be a CIDR (192.0.2.0/24) or a range of two addresses of one family (192.0.2.10-192.0.2.20)"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="CIDR has host bits set: use the network address (e.g. 192.0.2.0/24, not 192.0.2.1/24)"
// +kubebuilder:validation:XValidation:rule="!(self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == 4 && ip(self.split('-')[1].trim()).family() == 4) || ((int(self.split('-')[0].trim().split('.')[0]) * 256 + int(self.split('-')[0].trim().split('.')[1])) * 256 + int(self.split('-')[0].trim().split('.')[2])) * 256 + int(self.split('-')[0].trim().split('.')[3]) <= ((int(self.split('-')[1].trim().split('.')[0]) * 256 + int(self.split('-')[1].trim().split('.')[1])) * 256 + int(self.split('-')[1].trim().split('.')[2])) * 256 + int(self.split('-')[1].trim().split('.')[3])",message="range: the first address must not be after the last"
type Address string

// ServiceAllocation limits a pool to some Services and sets its priority.
// Every restriction that is set must match.
type ServiceAllocation struct {
	// Priority orders pools for automatic assignment: lower first. Pools
	// without a priority come after those with one, by name.
	// +optional
	Priority *int32 `json:"priority,omitempty"`

	// Namespaces lists the namespaces whose Services may use the pool.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector selects the namespaces whose Services may use the pool.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector selects the Services that may use the pool.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// AddressUsage counts a pool's addresses of one family. Capacity and
// Available are decimal strings: an IPv6 pool can hold more than 2^63.
type AddressUsage struct {
	// Capacity is what the pool can hand out: reserved addresses (service
	// and cluster CIDRs, node addresses) and, with avoidBuggyIPs, .0 and
	// .255 are not counted.
	Capacity string `json:"capacity"`
	// InUse is how many of the pool's addresses Services hold.
	InUse int64 `json:"inUse"`
	// Available is Capacity minus InUse.
	Available string `json:"available"`
}

// IPPoolStatus is what the controller observed of the pool.
type IPPoolStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	IPv4 *AddressUsage `json:"ipv4,omitempty"`
	// +optional
	IPv6 *AddressUsage `json:"ipv6,omitempty"`
	// Conditions: Ready (the pool is valid and in use) and Conflicting (it
	// overlaps another pool, the service or cluster CIDR, or a node
	// address; overlapping addresses are never handed out twice, and
	// reserved ones never at all).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPPool is a pool of addresses for Services of type LoadBalancer.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ippool
// +kubebuilder:printcolumn:name="IPv4 Available",type=string,JSONPath=`.status.ipv4.available`
// +kubebuilder:printcolumn:name="IPv6 Available",type=string,JSONPath=`.status.ipv6.available`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Conflicting",type=string,JSONPath=`.status.conditions[?(@.type=="Conflicting")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}

// IPPool condition types and reasons.
const (
	ConditionReady       = "Ready"
	ConditionConflicting = "Conflicting"

	ReasonValid            = "Valid"
	ReasonInvalidAddresses = "InvalidAddresses"
	ReasonInvalidSelector  = "InvalidSelector"
	ReasonOverlaps         = "Overlaps"
	ReasonNoOverlap        = "NoOverlap"
)
