// Command berth-cni is Berth's CNI plugin (spec 1.1.0), called by the
// container runtime: a veth pair per pod on the node's bridge, addresses
// from the node's podCIDRs kept in an on-disk store. The logic is in cni/.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/internal/version"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			res, err := cni.Add(request(args))
			if err != nil {
				return err
			}
			conf, err := cni.ParseConfig(args.StdinData)
			if err != nil {
				return err
			}
			return types.PrintResult(res, conf.CNIVersion)
		},
		Del:   func(args *skel.CmdArgs) error { return cni.Del(request(args)) },
		Check: func(args *skel.CmdArgs) error { return cni.Check(request(args)) },
		Status: func(args *skel.CmdArgs) error {
			return cni.Status(args.StdinData)
		},
		GC: func(args *skel.CmdArgs) error { return cni.GC(args.StdinData) },
	}, cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "berth-cni "+version.Get().String())
}

func request(args *skel.CmdArgs) cni.Request {
	return cni.Request{ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName, Config: args.StdinData}
}
