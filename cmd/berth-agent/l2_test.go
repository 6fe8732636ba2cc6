package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// The heartbeat key is required while layer 2 is on: no flag, a missing
// file or a short key stop the agent at start with an error naming the
// flag and the file (it used to log and run with layer 2 off).
func TestL2KeyRequired(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	good := filepath.Join(dir, "key")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("  0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "absent")
	for _, c := range []struct {
		args []string
		want []string // in the error; none: no error
	}{
		{nil, []string{"--l2-key-file", "--l2-announce=false"}},
		{[]string{"--l2-key-file", missing}, []string{"--l2-key-file " + missing, "no such file", "--l2-announce=false"}},
		{[]string{"--l2-key-file", short}, []string{"--l2-key-file " + short, "8 bytes", "at least 16"}},
		{[]string{"--l2-key-file", good, "--l2-dead-after", "150ms"}, []string{"--l2-dead-after at least twice --l2-heartbeat-interval"}},
		{[]string{"--l2-key-file", good, "--l2-heartbeat-window", "300ms"}, []string{"--l2-heartbeat-window (300ms) must be at least --l2-dead-after (400ms)"}},
		{[]string{"--l2-key-file", good, "--l2-reply-burst", "0"}, []string{"--l2-reply-burst at least 1"}},
		{[]string{"--l2-key-file", good, "--l2-reply-rate", "-1"}, []string{"--l2-reply-rate must be 0 (no limit) or more"}},
		{[]string{"--l2-key-file", good}, nil},
	} {
		fs := flag.NewFlagSet("berth-agent", flag.ContinueOnError)
		var o l2Options
		o.bind(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := o.check()
		if c.want == nil {
			if err != nil || string(o.key) != "0123456789abcdef0123" {
				t.Errorf("%v: %v, key %q; want no error and the key without spaces", c.args, err, o.key)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v: no error; want one saying %q", c.args, c.want)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q; want it to say %q", c.args, err, w)
			}
		}
	}
}

// The heartbeat sockets are bound on the Node's InternalIPs (the first of
// each family), not on every address; a Node with no InternalIP is an
// error that says so.
func TestL2ListenOnInternalIP(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeExternalIP, Address: "127.0.0.9"},
		{Type: corev1.NodeInternalIP, Address: "127.0.0.7"},
		{Type: corev1.NodeInternalIP, Address: "127.0.0.8"},
	}}}
	bare := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}
	c := fake.NewClientBuilder().WithObjects(node, bare).Build()
	o := l2Options{port: 0}
	conns, err := o.listen(context.Background(), c, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, conn := range conns {
		got = append(got, conn.LocalAddr().(*net.UDPAddr).IP.String())
		conn.Close()
	}
	if fmt.Sprint(got) != "[127.0.0.7]" {
		t.Errorf("listens on %v; want [127.0.0.7] (the first InternalIP)", got)
	}
	if _, err := o.listen(context.Background(), c, "n2"); err == nil || !strings.Contains(err.Error(), "Node n2 lists no InternalIP") {
		t.Errorf("a Node without InternalIP: %v", err)
	}
}

// A Node whose InternalIP this host does not have (198.51.100.77) does not
// stop the agent: the failure is what readiness says until the sockets
// bind, here once the Node lists an address the host has.
func TestL2ListenUntilBound(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "198.51.100.77"},
	}}}
	c := fake.NewClientBuilder().WithObjects(node).WithStatusSubresource(node).Build()
	o := l2Options{port: 0, bindRetry: 10 * time.Millisecond}
	var failed atomic.Pointer[error]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		conns []*net.UDPConn
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conns, err := o.listenUntilBound(ctx, c, "n1", &failed)
		done <- result{conns, err}
	}()
	for failed.Load() == nil {
		if ctx.Err() != nil {
			t.Fatal("no bind failure recorded for an address the host does not have")
		}
		time.Sleep(time.Millisecond)
	}
	if err := *failed.Load(); !strings.Contains(err.Error(), "InternalIP 198.51.100.77") {
		t.Errorf("readiness says %q; want it to name the InternalIP", err)
	}
	node.Status.Addresses[0].Address = "127.0.0.7"
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.conns) != 1 {
		t.Fatalf("after the Node changed: %v, %d sockets", r.err, len(r.conns))
	}
	r.conns[0].Close()
	if failed.Load() != nil {
		t.Errorf("readiness still says %v once bound", *failed.Load())
	}
}
