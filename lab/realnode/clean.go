package realnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// configFile is the node's Config, kept in its folder so that what a dead
// runner left can be found and cleaned (Load, Clean).
const configFile = "node.json"

func (c Config) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, configFile), b, 0o644)
}

// Load reads the Config of the node whose folder is dir.
func Load(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return c, fmt.Errorf("lab node folder %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", filepath.Join(dir, configFile), err)
	}
	return c, c.Check()
}

// Clean ends whatever is left of the node, with or without the runner that
// started it: the processes in its mount namespace (kubelet, containerd, the
// shims) and in its cgroups (the pods), then its cgroups, its mount namespace
// and its hold on the host's kernel tunables.
func (c Config) Clean() error {
	var errs []error
	// A process ending may start others meanwhile (a shim runs runc, the
	// kubelet umount): take the list again until it is empty; after the
	// first round's grace, no more waiting.
	grace := 5 * time.Second
	for round := 0; ; round++ {
		pids := append(c.inMountNamespace(), c.cgroupPids()...)
		if len(pids) == 0 {
			break
		}
		if round == 20 {
			errs = append(errs, fmt.Errorf("node %s: processes %v keep appearing", c.Name, pids))
			break
		}
		if err := netns.Terminate(pids, grace); err != nil {
			errs = append(errs, err)
		}
		grace = 0
	}
	errs = append(errs, c.releaseTunables(), c.removeCgroupRoot(), c.releaseMountNamespace())
	return errors.Join(errs...)
}
