package lab

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for the client certificate pki/<cert>
// that trusts the lab CA and talks to server.
func (c Config) writeKubeconfig(name, cert, server string) error {
	caPEM, err := os.ReadFile(c.pki("ca.crt"))
	if err != nil {
		return err
	}
	crtPEM, err := os.ReadFile(c.pki(cert + ".crt"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(c.pki(cert + ".key"))
	if err != nil {
		return err
	}
	ctx := "berth-lab-" + c.Name
	kc := clientcmdapi.NewConfig()
	kc.Clusters[ctx] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos[ctx] = &clientcmdapi.AuthInfo{ClientCertificateData: crtPEM, ClientKeyData: keyPEM}
	kc.Contexts[ctx] = &clientcmdapi.Context{Cluster: ctx, AuthInfo: ctx}
	kc.CurrentContext = ctx
	if err := clientcmd.WriteToFile(*kc, c.kubeconfig(name)); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", name, err)
	}
	return os.Chmod(c.kubeconfig(name), 0o600)
}

// APIServerURL is where kube-apiserver listens: the host's LAN address, so the
// node namespaces reach it the way real nodes reach theirs.
func (c Config) APIServerURL(port int) string {
	return "https://" + net.JoinHostPort(c.HostLAN().String(), strconv.Itoa(port))
}
