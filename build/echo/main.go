// Command berth-echo is the program of the lab's echo images
// (berth.dev/lab/{http,tcp,udp,multi}-echo:lab): the lab's echo programs
// (lab/echo) as a static binary that a real container runs. The
// image's entrypoint names the program; the port is --port N, else $PORT,
// else 8080. The pod's identity comes from the environment the lab's pod
// specs set with the downward API: POD_NAME, POD_NAMESPACE, POD_IP, POD_IPS
// (status.podIPs, comma-separated) and NODE_NAME. SIGTERM or SIGINT ends it
// at once with status 0.
//
// It imports lab/echo alone, not the lab package (client-go, the lab's
// netlink code): the binary stays a few megabytes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/berthnet/berth/lab/echo"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "berth-echo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println("berth-echo")
		return nil
	}
	if len(args) == 0 {
		return errors.New("usage: berth-echo http|tcp|udp|multi [--port N]")
	}
	prog, ok := echo.Programs[args[0]]
	if !ok {
		return fmt.Errorf("no program %q: choose among http, tcp, udp, multi", args[0])
	}
	fs := flag.NewFlagSet("berth-echo "+args[0], flag.ContinueOnError)
	port := fs.Int("port", 0, "port to serve on (default $PORT, else 8080)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := choosePort(*port, os.Getenv("PORT"))
	if err != nil {
		return err
	}
	env := echo.FromEnv(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintf(os.Stderr, "berth-echo: %s echo on port %d for pod %s\n", args[0], p, env)
	return prog(ctx, p, env)
}

// choosePort takes --port, else $PORT, else 8080.
func choosePort(flagPort int, envPort string) (int, error) {
	p := flagPort
	if p == 0 && envPort != "" {
		n, err := strconv.Atoi(envPort)
		if err != nil {
			return 0, fmt.Errorf("PORT=%q is not a port number", envPort)
		}
		p = n
	}
	if p == 0 {
		p = 8080
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d is out of 1-65535", p)
	}
	return p, nil
}
