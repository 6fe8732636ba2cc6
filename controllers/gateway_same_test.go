package controllers

import (
	"reflect"
	"testing"

	"github.com/berthnet/berth/xds/ir"
)

// TestSameGroupFields: sameGroup compares ir.Group and ir.HTTPListener
// field by field; a new field must be compared there too.
func TestSameGroupFields(t *testing.T) {
	for typ, n := range map[reflect.Type]int{reflect.TypeFor[ir.Group](): 3, reflect.TypeFor[ir.HTTPListener](): 5} {
		if typ.NumField() != n {
			t.Errorf("%s has %d fields, sameGroup compares %d: compare the new one", typ, typ.NumField(), n)
		}
	}
	r := &ir.HTTPRoute{Name: "r", Path: &ir.StringMatch{Type: ir.Exact, Value: "/a"}}
	c := &ir.Cluster{Name: "ns/s/80", Namespace: "ns", Service: "s", Port: 80, Protocol: ir.HTTP}
	g := func(route *ir.HTTPRoute, cl *ir.Cluster) *ir.Group {
		return &ir.Group{Name: "gateway/ns/g", HTTP: []*ir.HTTPListener{{Name: "ns/g/http", Port: 80, Routes: []*ir.HTTPRoute{route}}}, Clusters: []*ir.Cluster{cl}}
	}
	r2 := *r
	c2 := *c
	if !sameGroup(g(r, c), g(&r2, &c2)) {
		t.Error("equal copies differ")
	}
	r2.Path = &ir.StringMatch{Type: ir.Exact, Value: "/b"}
	c2.Port = 81
	if sameGroup(g(r, c), g(&r2, c)) || sameGroup(g(r, c), g(r, &c2)) || sameGroup(nil, g(r, c)) {
		t.Error("different groups are the same")
	}
}
