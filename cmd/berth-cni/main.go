// Command berth-cni is Berth's CNI plugin, called by the container runtime.
//
// This build speaks the CNI protocol (VERSION, STATUS and the error format)
// but has no pod network to offer yet: STATUS and ADD answer "plugin not
// available" (code 50), which tells a CNI 1.1 runtime to keep the node's pods
// pending rather than start them without a network. DEL and GC have nothing
// to free and succeed, as the spec requires of a plugin with no state. The
// bridge, veth and address store arrive with the pod-network issue.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/berthnet/berth/internal/version"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    notAvailable,
		Check:  notAvailable,
		Status: notAvailable,
		Del:    func(*skel.CmdArgs) error { return nil },
		GC:     func(*skel.CmdArgs) error { return nil },
	}, cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "berth-cni "+version.Get().String())
}

func notAvailable(*skel.CmdArgs) error {
	return types.NewError(types.ErrPluginNotAvailable,
		"berth pod network is not available on this node",
		"this berth-cni build has no pod network; install a release with the pod-network component")
}
