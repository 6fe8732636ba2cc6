package netnstest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// Connect listens on addr (host:port) inside server, dials it from inside
// client over TCP, and returns the client address the server saw. It fails
// the test if the connection cannot be made within ten seconds.
func Connect(t testing.TB, server, client *netns.Namespace, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, server, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, c.RemoteAddr().String())
	}()
	var seen []byte
	if err := client.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		seen, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("connect from %s to %s: %v", client, addr, err)
	}
	return string(seen)
}
