package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// TestEchoImages builds the four echo images from build/echo, checks their
// names, entrypoints and user, that they share the binary's layer, and, as
// root, runs each one's entrypoint in a chroot of its file system as user
// 65532 inside a network namespace of the test's: it answers as the pod the
// environment describes, and ends at once with status 0 on SIGTERM.
func TestEchoImages(t *testing.T) {
	bins := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bins, "berth-echo"), "../../build/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-echo: %v\n%s", err, out)
	}
	o := labOptions(t, "http-echo", "tcp-echo", "udp-echo", "multi-echo")
	o.BinDir = bins
	built := buildTwice(t, o)

	want := map[string]struct {
		ref   string
		entry []string
	}{
		"http-echo":  {"berth.dev/lab/http-echo:lab", []string{"/usr/local/bin/berth-echo", "http"}},
		"tcp-echo":   {"berth.dev/lab/tcp-echo:lab", []string{"/usr/local/bin/berth-echo", "tcp"}},
		"udp-echo":   {"berth.dev/lab/udp-echo:lab", []string{"/usr/local/bin/berth-echo", "udp"}},
		"multi-echo": {"berth.dev/lab/multi-echo:lab", []string{"/usr/local/bin/berth-echo", "multi"}},
	}
	roots := map[string]string{}
	entries := map[string][]string{}
	var binLayers []string
	for _, b := range built {
		w := want[b.Name]
		if b.Ref != w.ref {
			t.Errorf("%s: ref %s, want %s", b.Name, b.Ref, w.ref)
		}
		img, cf := readLab(t, b, 2)
		if !slices.Equal(cf.Config.Entrypoint, w.entry) || cf.Config.User != "65532:65532" {
			t.Errorf("%s: entrypoint %q user %q, want %q as 65532:65532", b.Name, cf.Config.Entrypoint, cf.Config.User, w.entry)
		}
		if cf.Config.Labels["org.opencontainers.image.title"] != b.Name || cf.Config.Labels["org.opencontainers.image.version"] != testVersion {
			t.Errorf("%s: labels %v", b.Name, cf.Config.Labels)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		d, err := layers[1].Digest()
		if err != nil {
			t.Fatal(err)
		}
		binLayers = append(binLayers, d.String())
		root := extract(t, img)
		if got, want := files(t, root), []string{"/etc/group", "/etc/passwd", "/usr/local/bin/berth-echo"}; !slices.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", b.Name, got, want)
		}
		roots[b.Name], entries[b.Name] = root, cf.Config.Entrypoint
	}
	if len(slices.Compact(slices.Clone(binLayers))) != 1 {
		t.Errorf("the echo images' binary layers differ: %q, want one layer they share", binLayers)
	}

	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	pod := []string{
		"POD_NAME=echo-imagetest-0", "POD_NAMESPACE=ns-imagetest", "POD_IP=10.244.1.7",
		"POD_IPS=10.244.1.7,fd00:10:244:1::7", "NODE_NAME=node-imagetest",
	}
	run := func(name string, env []string, args ...string) *served {
		c := inImage{root: roots[name], uid: 65532, gid: 65532, ns: ns, env: append(slices.Clone(pod), env...)}
		return c.serve(t, append(slices.Clone(entries[name]), args...)...)
	}

	// HTTP on $PORT, over both families: the reply is the pod's identity
	// and the client's address, as lab.EchoReply reads it.
	srv := run("http-echo", []string{"PORT=18080"})
	client := netnstest.HTTPClient(ns)
	for host, from := range map[string]string{"127.0.0.1": "127.0.0.1", "[::1]": "::1"} {
		want := `{"pod":"echo-imagetest-0","namespace":"ns-imagetest","podIP":"10.244.1.7",` +
			`"podIPs":["10.244.1.7","fd00:10:244:1::7"],"node":"node-imagetest","client":"` + from + `"}` + "\n"
		eventually(t, "GET http://"+host+":18080/", func() error {
			resp, err := client.Get("http://" + host + ":18080/")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if string(body) != want || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET http://%s:18080/: %s %q\nwant %q", host, resp.Header.Get("Content-Type"), body, want)
			}
			return nil
		})
	}
	srv.stop(t)

	// TCP on --port.
	srv = run("tcp-echo", nil, "--port", "18081")
	eventually(t, "TCP echo on 18081", func() error { return tcpRoundTrip(t, ns, "127.0.0.1:18081", "over tcp") })
	srv.stop(t)

	// UDP: the answer starts with the pod's IP.
	srv = run("udp-echo", nil, "--port", "18082")
	eventually(t, "UDP echo on 18082", func() error { return udpRoundTrip(t, ns, "127.0.0.1:18082", "over udp", "10.244.1.7 over udp") })
	srv.stop(t)

	// multi: TCP and UDP on $PORT and on each of $ECHO_PORTS.
	srv = run("multi-echo", []string{"PORT=18083", "ECHO_PORTS=18084, 18085"})
	for _, port := range []string{"18083", "18084", "18085"} {
		eventually(t, "multi TCP "+port, func() error { return tcpRoundTrip(t, ns, "127.0.0.1:"+port, "multi "+port) })
		eventually(t, "multi UDP "+port, func() error {
			return udpRoundTrip(t, ns, "[::1]:"+port, "multi "+port, "10.244.1.7 multi "+port)
		})
	}
	srv.stop(t)

	// Bad input: a PORT that is no number stops it at once, saying so.
	srv = run("http-echo", []string{"PORT=http"})
	select {
	case err := <-srv.done:
		if err == nil || !strings.Contains(srv.out.String(), `PORT="http" is not a port number`) {
			t.Errorf("PORT=http: %v: %s", err, srv.out.String())
		}
	case <-time.After(time.Minute):
		t.Error("PORT=http: still running after a minute")
	}
}

// tcpRoundTrip sends a line over TCP inside ns and wants it back.
func tcpRoundTrip(t *testing.T, ns *netns.Namespace, addr, line string) error {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		t.Fatalf("TCP %s: sent %q, got %q", addr, line, got)
	}
	return nil
}

// udpRoundTrip sends a datagram inside ns and wants the answer want.
func udpRoundTrip(t *testing.T, ns *netns.Namespace, addr, msg, want string) error {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err // lost, or no server yet: try again
	}
	if string(buf[:n]) != want {
		t.Fatalf("UDP %s: sent %q, got %q, want %q", addr, msg, buf[:n], want)
	}
	return nil
}
