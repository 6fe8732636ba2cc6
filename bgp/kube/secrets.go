package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
)

// ReasonPasswordSecretForbidden is the reason of a peer's Configured
// condition when the agents may not read its password Secret.
const ReasonPasswordSecretForbidden = "PasswordSecretForbidden"

// ExtraSecretsValue is the chart value that names Secrets the agents may
// read besides those the chart knows of; a peer whose password Secret the
// agents may not read says to set it.
const ExtraSecretsValue = "agent.extraSecretNames"

// readPasswordSecrets gets, by name, each password Secret the peers name in
// namespace. The agents' Role lists the Secrets they may read
// (resourceNames), so they cannot list or watch the namespace, where the
// xDS CA's key also lives. A Secret that is not there is left out of the
// map (the peer then says so); one the agents may not read is in
// forbidden. Any other error fails the read, to be retried.
func readPasswordSecrets(ctx context.Context, r client.Reader, namespace string, peers []v1alpha1.BGPPeer) (secrets map[string]*corev1.Secret, forbidden map[string]bool, err error) {
	secrets, forbidden = map[string]*corev1.Secret{}, map[string]bool{}
	for i := range peers {
		ref := peers[i].Spec.PasswordSecret
		if ref == nil || secrets[ref.Name] != nil || forbidden[ref.Name] {
			continue
		}
		var s corev1.Secret
		err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s)
		switch {
		case err == nil:
			secrets[ref.Name] = &s
		case apierrors.IsNotFound(err):
		case apierrors.IsForbidden(err):
			forbidden[ref.Name] = true
		default:
			return nil, nil, fmt.Errorf("password Secret %s/%s: %w", namespace, ref.Name, err)
		}
	}
	return secrets, forbidden, nil
}

// forbiddenSecret is the problem of a peer whose password Secret the
// agents may not read.
func forbiddenSecret(name string) error {
	return fmt.Errorf("password Secret %q: the agents may not read it (their Role names each Secret they read): add it to the chart value %s", name, ExtraSecretsValue)
}
