// Package v1alpha1 holds Berth's custom resource types, API group berth.dev.
//
// +kubebuilder:object:generate=true
// +groupName=berth.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every Berth kind.
	GroupVersion = schema.GroupVersion{Group: "berth.dev", Version: "v1alpha1"}

	// SchemeBuilder registers Berth's kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds Berth's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
