package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The lab router runs BIRD 2 (Debian's bird2), a BGP peer of every node
// (see bgp.go).

func (c Config) birdDir() string    { return filepath.Join(c.StateDir, "bird") }
func (c Config) birdSocket() string { return filepath.Join(c.birdDir(), "bird.ctl") }
func (c Config) birdConf() string   { return filepath.Join(c.birdDir(), "bird.conf") }

// birdConfig is the router's BIRD configuration.
func (c Config) birdConfig() string {
	return fmt.Sprintf(`# Written by berthctl lab for lab %q; rewritten on every lab up.
router id %s;

# Learn the router's own interfaces and connected networks.
protocol device {
}

protocol direct {
	ipv4;
	interface "eth*";
}

# Install the routes BIRD learns into the router's kernel table, all paths of
# a multipath route included, so the router spreads traffic across nodes.
protocol kernel {
	merge paths on;
	ipv4 {
		export where source != RTS_DEVICE;
	};
}
%s`, c.Name, c.RouterLAN(), c.birdPeers())
}

// birdSpec runs BIRD in the foreground in the router namespace.
func (c Config) birdSpec(birdPath string) procSpec {
	return procSpec{name: "bird", netns: c.RouterNamespace(), path: birdPath, args: []string{
		"-f", "-c", c.birdConf(), "-s", c.birdSocket(), "-P", filepath.Join(c.birdDir(), "bird.pid"),
	}}
}

// findBird locates the bird and birdc binaries of the bird2 package.
func findBird() (bird, birdc string, err error) {
	bird, err = exec.LookPath("bird")
	if err != nil {
		return "", "", fmt.Errorf("bird not found: install Debian's bird2 package (apt-get install bird2)")
	}
	birdc, err = exec.LookPath("birdc")
	if err != nil {
		return "", "", fmt.Errorf("birdc not found: install Debian's bird2 package (apt-get install bird2)")
	}
	return bird, birdc, nil
}

func (c Config) writeBirdConfig() error {
	if err := os.MkdirAll(c.birdDir(), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.birdConf(), []byte(c.birdConfig()), 0o644)
}

// birdStatus asks the running BIRD over its control socket how it is.
func (c Config) birdStatus(ctx context.Context, birdc string) error {
	out, err := exec.CommandContext(ctx, birdc, "-s", c.birdSocket(), "show", "status").CombinedOutput()
	if err != nil {
		return fmt.Errorf("birdc show status: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), "Daemon is up and running") {
		return fmt.Errorf("bird: %s", strings.TrimSpace(string(out)))
	}
	return nil
}
