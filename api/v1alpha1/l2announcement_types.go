package v1alpha1

import (
	"fmt"
	"path"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2AnnouncementSpec says which LoadBalancer addresses are announced on the
// LAN (ARP for IPv4, NDP for IPv6), from which nodes and on which
// interfaces.
type L2AnnouncementSpec struct {
	// IPPools names the pools whose addresses are announced. With
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

	// NodeSelectors pick the nodes that may announce (matching any one is
	// enough); empty: every node. Nodes labelled
	// node.kubernetes.io/exclude-from-external-load-balancers never do.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Interfaces are interface names or shell patterns ("eth0", "bond*",
	// "enp?s0"). Empty: the interface that holds the node's address on the
	// announced address's subnet, else every up interface that is not
	// virtual.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_.:@*?\[\]-]+$`
	// +kubebuilder:validation:XValidation:rule=`self.all(p, p.matches(r'^([^\[]|\[\^?[^\]]+\])*$'))`,message="an interface pattern's brackets must pair up around at least one character, like eth[0-3]"
	// +listType=set
	// +optional
	Interfaces []string `json:"interfaces,omitempty"`
}

// ValidateInterfaces says which interface pattern does not parse (like
// "eth[", which would match no interface), or nil. The API server's rule
// refuses unpaired brackets; this catches the rest (like "eth[a-]").
func (s *L2AnnouncementSpec) ValidateInterfaces() error {
	for i, p := range s.Interfaces {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("interfaces[%d] %q is not a valid pattern (%v): brackets must pair up around a class, like eth[0-3]", i, p, err)
		}
	}
	return nil
}

// ReasonInvalidInterface: an L2Announcement's Ready condition is False
// because an interface pattern does not parse (the agents leave the
// announcement out).
const ReasonInvalidInterface = "InvalidInterface"

// L2AnnouncementStatus is what the controller found.
type L2AnnouncementStatus struct {
	// Conditions: Ready (the selectors are valid and pools match).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// L2Announcement announces LoadBalancer addresses at layer 2.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=l2a
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Announcement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AnnouncementSpec   `json:"spec,omitempty"`
	Status L2AnnouncementStatus `json:"status,omitempty"`
}

// L2AnnouncementList is a list of L2Announcements.
// +kubebuilder:object:root=true
type L2AnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Announcement `json:"items"`
}
