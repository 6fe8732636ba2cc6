package netnstest

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// Forward makes a TCP service that listens at addr on the host's loopback
// (a test's API server) answer at the same address inside ns, so a process
// there uses the same kubeconfig as one on the host and ns needs no links or
// routes: the copying runs in the test's process, which holds a socket in
// each namespace. It stops when the test ends.
func Forward(t testing.TB, ns *netns.Namespace, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c ...net.Conn) {
		mu.Lock()
		conns = append(conns, c...)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			// Dialled from a thread in the host's namespace.
			up, err := net.Dial("tcp", addr)
			if err != nil {
				down.Close()
				continue
			}
			track(down, up)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, down); up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(down, up); down.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// HTTPClient is an HTTP client whose connections start inside ns, for a
// server (a component's health or metrics endpoint) listening there.
func HTTPClient(ns *netns.Namespace) *http.Client {
	dial := func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		err = ns.Do(func() error {
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}
