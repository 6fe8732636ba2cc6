package kube

import (
	"context"
	"fmt"
	"time"

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

// passwordSecrets reads, by name, each password Secret the peers name, and
// keeps each read for ttl. The agents' Role lists the Secrets they may read
// (resourceNames), so they cannot list or watch the namespace, where the
// xDS CA's key also lives; and the runner rebuilds on every Service and
// EndpointSlice change, so a read per peer per rebuild on every node would
// load the API server. A changed, new or deleted Secret is seen within ttl.
type passwordSecrets struct {
	reader client.Reader
	ttl    time.Duration
	now    func() time.Time
	reads  map[string]secretRead
}

// secretRead is one read of a Secret: the Secret, or nil when it is not
// there, or forbidden.
type secretRead struct {
	secret    *corev1.Secret
	forbidden bool
	at        time.Time
}

// get returns the peers' password Secrets in namespace by name (one that
// is not there is left out: the peer then says so), and those the agents
// may not read. Any other error fails the read, to be retried.
func (p *passwordSecrets) get(ctx context.Context, namespace string, peers []v1alpha1.BGPPeer) (secrets map[string]*corev1.Secret, forbidden map[string]bool, err error) {
	now := p.now()
	secrets, forbidden = map[string]*corev1.Secret{}, map[string]bool{}
	kept := map[string]secretRead{}
	for i := range peers {
		ref := peers[i].Spec.PasswordSecret
		if ref == nil {
			continue
		}
		r, ok := kept[ref.Name]
		if !ok {
			if r, ok = p.reads[ref.Name]; !ok || now.Sub(r.at) >= p.ttl {
				if r, err = p.read(ctx, namespace, ref.Name); err != nil {
					return nil, nil, err
				}
				r.at = now
			}
			kept[ref.Name] = r
		}
		if r.secret != nil {
			secrets[ref.Name] = r.secret
		}
		if r.forbidden {
			forbidden[ref.Name] = true
		}
	}
	p.reads = kept // a name no peer names any more is forgotten
	return secrets, forbidden, nil
}

func (p *passwordSecrets) read(ctx context.Context, namespace, name string) (secretRead, error) {
	var s corev1.Secret
	err := p.reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s)
	switch {
	case err == nil:
		return secretRead{secret: &s}, nil
	case apierrors.IsNotFound(err):
		return secretRead{}, nil
	case apierrors.IsForbidden(err):
		return secretRead{forbidden: true}, nil
	}
	return secretRead{}, fmt.Errorf("password Secret %s/%s: %w", namespace, name, err)
}

// forbiddenSecret is the problem of a peer whose password Secret the
// agents may not read.
func forbiddenSecret(name string) error {
	return fmt.Errorf("password Secret %q: the agents may not read it (their Role names each Secret they read): add it to the chart value %s", name, ExtraSecretsValue)
}
