package server

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// ObserverKey in a node's metadata, set to true, marks a stream that only
// reads a group's configuration (berthctl printing what Envoys are served):
// it is served like an Envoy, with the same certificate check, but never
// counts as one in GroupStatus, so it cannot make a Gateway Programmed.
const ObserverKey = "berth.dev/observer"

// ObserverMetadata is the node metadata of an observer.
func ObserverMetadata() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{ObserverKey: structpb.NewBoolValue(true)}}
}

// IsObserver reports whether a node says it is an observer.
func IsObserver(node *core.Node) bool {
	return node.GetMetadata().GetFields()[ObserverKey].GetBoolValue()
}
