// Package v1alpha1 holds Berth's custom resource types, API group berth.dev.
//
// +kubebuilder:object:generate=true
// +groupName=berth.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every Berth kind.
	GroupVersion = schema.GroupVersion{Group: "berth.dev", Version: "v1alpha1"}

	// SchemeBuilder registers Berth's kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds Berth's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// knownTypes lists every kind of the group with its list type; each kind is
// added here when it lands, rather than from init functions scattered across
// files.
func knownTypes() []runtime.Object {
	return []runtime.Object{&IPPool{}, &IPPoolList{}, &L2Announcement{}, &L2AnnouncementList{},
		&BGPPeer{}, &BGPPeerList{}, &BGPAnnouncement{}, &BGPAnnouncementList{}}
}

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, knownTypes()...)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
