// Package echo is the lab's echo programs: an HTTP server that answers with
// the pod it runs in and the client address it saw, TCP and UDP echo, and
// both on several ports. build/echo runs them as the lab's echo images.
package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Pod is who the program answers as, read once from the environment.
type Pod struct {
	name, namespace, ip, node string
	ips                       []string
	// echoPorts is $ECHO_PORTS, the multi program's further ports.
	echoPorts string
}

// FromEnv reads POD_NAME, POD_NAMESPACE, POD_IP, POD_IPS (comma-separated),
// NODE_NAME and ECHO_PORTS.
func FromEnv(getenv func(string) string) Pod {
	p := Pod{name: getenv("POD_NAME"), namespace: getenv("POD_NAMESPACE"), ip: getenv("POD_IP"), node: getenv("NODE_NAME"), echoPorts: getenv("ECHO_PORTS")}
	for _, ip := range strings.Split(getenv("POD_IPS"), ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			p.ips = append(p.ips, ip)
		}
	}
	return p
}

// String names the pod: namespace/name on node.
func (p Pod) String() string { return p.namespace + "/" + p.name + " on " + p.node }

// Reply is what the HTTP echo answers.
type Reply struct {
	Pod       string   `json:"pod"`
	Namespace string   `json:"namespace,omitempty"`
	PodIP     string   `json:"podIP"`
	PodIPs    []string `json:"podIPs,omitempty"`
	Node      string   `json:"node"`
	Client    string   `json:"client"`
}

// Programs are the echo programs by name, each serving on port until ctx
// ends.
var Programs = map[string]func(ctx context.Context, port int, p Pod) error{
	"http":  httpEcho,
	"tcp":   func(ctx context.Context, port int, _ Pod) error { return tcpEcho(ctx, port) },
	"udp":   udpEcho,
	"multi": multiEcho,
}

func httpEcho(ctx context.Context, port int, p Pod) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(Reply{
				Pod: p.name, Namespace: p.namespace, PodIP: p.ip, PodIPs: p.ips, Node: p.node, Client: host,
			})
		}),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func tcpEcho(ctx context.Context, port int) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			_, _ = io.Copy(c, c)
		}()
	}
}

// udpEcho answers each datagram with the pod's IP, a space and the
// datagram, so a client sees which pod it reached.
func udpEcho(ctx context.Context, port int, p Pod) error {
	pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		out := append([]byte(p.ip+" "), buf[:n]...)
		_, _ = pc.WriteTo(out, addr)
	}
}

// multiEcho serves TCP and UDP echo on the port and on every port of
// $ECHO_PORTS (comma-separated): the NetworkPolicy truth tables probe each
// pod on TCP and UDP 80 and 81.
func multiEcho(ctx context.Context, port int, p Pod) error {
	ports, err := Ports(port, p.echoPorts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2*len(ports))
	for _, n := range ports {
		go func() { errs <- tcpEcho(ctx, n) }()
		go func() { errs <- udpEcho(ctx, n, p) }()
	}
	// The first server to stop ends the program (the kubelet restarts it).
	return <-errs
}

// Ports is the multi program's ports: port, then those of list
// (ECHO_PORTS), each once.
func Ports(port int, list string) ([]int, error) {
	ports := []int{port}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("ECHO_PORTS: %q is not a port", s)
		}
		if !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	return ports, nil
}
