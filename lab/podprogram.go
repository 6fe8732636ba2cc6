package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// No container images can run in the lab, so pods name one of these built-in
// programs as their image; the pod runner starts `berthctl lab pod-program`
// with it inside the pod's network namespace.
var podPrograms = map[string]func(ctx context.Context, port int) error{
	"berth.dev/lab/http-echo": httpEcho,
	"berth.dev/lab/tcp-echo":  tcpEcho,
	"berth.dev/lab/udp-echo":  udpEcho,
	// NetworkPolicy truth tables: TCP and UDP echo on every port.
	"berth.dev/lab/multi-echo": multiEcho,
}

// KnownImage reports whether image is one of the lab's built-in programs.
func KnownImage(image string) bool {
	_, ok := podPrograms[imageName(image)]
	return ok
}

func imageName(image string) string {
	for i := len(image) - 1; i >= 0; i-- {
		if image[i] == ':' {
			return image[:i]
		}
		if image[i] == '/' {
			break
		}
	}
	return image
}

// RunPodProgram runs the program an image names, on port, until ctx ends.
func RunPodProgram(ctx context.Context, image string, port int) error {
	p, ok := podPrograms[imageName(image)]
	if !ok {
		return fmt.Errorf("image %q is not one of the lab's built-in programs (berth.dev/lab/http-echo, tcp-echo, udp-echo)", image)
	}
	return p(ctx, port)
}

// EchoReply is what the HTTP echo server answers.
type EchoReply struct {
	Pod   string `json:"pod"`
	PodIP string `json:"podIP"`
	// PodIPs are the pod's addresses, one per family, PodIP first.
	PodIPs []string `json:"podIPs,omitempty"`
	Node   string   `json:"node"`
	Client string   `json:"client"`
}

func httpEcho(ctx context.Context, port int) error {
	srv := &http.Server{
		Addr:              ":" + strconv.Itoa(port),
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			w.Header().Set("Content-Type", "application/json")
			var ips []string
			if v := os.Getenv("POD_IPS"); v != "" {
				ips = strings.Split(v, ",")
			}
			_ = json.NewEncoder(w).Encode(EchoReply{
				Pod: os.Getenv("POD_NAME"), PodIP: os.Getenv("POD_IP"), PodIPs: ips, Node: os.Getenv("NODE_NAME"), Client: host,
			})
		}),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
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

func udpEcho(ctx context.Context, port int) error {
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
		// Answer with who answered, so a client sees which pod it reached.
		reply := append([]byte(os.Getenv("POD_IP")+" "), buf[:n]...)
		_, _ = pc.WriteTo(reply, addr)
	}
}
