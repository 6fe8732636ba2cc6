package kube

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthnet/berth/l2announce"
)

// AnnotationState is the Service annotation that carries, as data, what
// the agents say of each of the Service's layer-2 addresses: a JSON object
// from address to Record, e.g.
//
//	{"198.18.0.237":{"state":"Announcing","node":"node2","interfaces":["eth0"]}}
//
// The agent that speaks for an address writes its entry, in the same
// status write as the condition ConditionAnnounced (whose message says
// the same for people). Decisions (a takeover that skips the conflict
// probe, the condition's reason, who owns an address) read this, never
// the message.
const AnnotationState = "berth.dev/l2-state"

// Record is one address's entry in AnnotationState.
type Record struct {
	// State is Announcing, Conflict or NoAnnouncer.
	State l2announce.ReportState `json:"state"`
	// Node is the agent that wrote the entry: for Announcing, the node
	// that answers for the address.
	Node string `json:"node"`
	// Interfaces: where it is announced (Announcing) or was probed
	// (Conflict).
	Interfaces []string `json:"interfaces,omitempty"`
	// ConflictMAC is the LAN host that answered the probe (Conflict).
	ConflictMAC string `json:"conflictMAC,omitempty"`
}

// Records reads AnnotationState of svc: nothing when it has none, an
// error (saying what is wrong) when it does not parse.
func Records(svc *corev1.Service) (map[netip.Addr]Record, error) {
	out := map[netip.Addr]Record{}
	v, ok := svc.Annotations[AnnotationState]
	if !ok {
		return out, nil
	}
	var raw map[string]Record
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return out, fmt.Errorf("service %s/%s: annotation %s is not a JSON object of address to record: %w", svc.Namespace, svc.Name, AnnotationState, err)
	}
	for k, r := range raw {
		a, err := netip.ParseAddr(k)
		if err != nil {
			return map[netip.Addr]Record{}, fmt.Errorf("service %s/%s: annotation %s: key %q is not an address", svc.Namespace, svc.Name, AnnotationState, k)
		}
		switch r.State {
		case l2announce.Announcing, l2announce.Conflict, l2announce.NoAnnouncer:
		default:
			return map[netip.Addr]Record{}, fmt.Errorf("service %s/%s: annotation %s: %s has state %q (want Announcing, Conflict or NoAnnouncer)", svc.Namespace, svc.Name, AnnotationState, k, r.State)
		}
		out[a.Unmap()] = r
	}
	return out, nil
}

// formatRecords is the annotation's value (keys in encoding/json's
// sorted order, so an unchanged state writes the same bytes).
func formatRecords(recs map[netip.Addr]Record) string {
	raw := make(map[string]Record, len(recs))
	for a, r := range recs {
		raw[a.String()] = r
	}
	b, err := json.Marshal(raw)
	if err != nil {
		panic(fmt.Sprintf("marshal %s: %v", AnnotationState, err)) // strings and slices of strings only
	}
	return string(b)
}

// recordOf is what r puts in the annotation.
func recordOf(r l2announce.Report) Record {
	rec := Record{State: r.State, Node: r.Node, Interfaces: slices.Clone(r.Interfaces)}
	if r.ConflictMAC != nil {
		rec.ConflictMAC = r.ConflictMAC.String()
	}
	return rec
}

// report is the record read back as the announcer's Report of addr.
func (rec Record) report(addr netip.Addr) *l2announce.Report {
	r := &l2announce.Report{Addr: addr, State: rec.State, Node: rec.Node, Interfaces: rec.Interfaces}
	if rec.ConflictMAC != "" {
		if mac, err := net.ParseMAC(rec.ConflictMAC); err == nil {
			r.ConflictMAC = mac
		}
	}
	return r
}
