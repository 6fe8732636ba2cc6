package proxybench

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/berthnet/berth/lab/netns"
)

// forwardAPI makes the API server, which listens on the host's loopback,
// answer at the same address inside ns, so a proxy there uses the same
// kubeconfig as a process on the host and ns needs no links or routes. The
// copying runs in the benchmark's process, the same for both proxies.
func forwardAPI(b *testing.B, ns *netns.Namespace, addr string) {
	b.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		b.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
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
			track(down)
			track(up)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, down); up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(down, up); down.Close() }()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
