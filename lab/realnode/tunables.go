package realnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// kernelTunables are the host-wide sysctls the kubelet sets at start
// (pkg/kubelet/cm, setupKernelTunables): none of them is per namespace, so a
// lab node changes the host's. The first node to start records their values
// and the last one to stop puts them back.
var kernelTunables = []string{
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
}

// tunablesFile records the host's values and the nodes (by folder) running.
var tunablesFile = "/run/berth-realnode/kernel-tunables.json"

type tunablesRecord struct {
	Values map[string]string `json:"values"`
	Nodes  []string          `json:"nodes"`
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// withTunables runs fn on the record under an exclusive lock and writes back
// what fn leaves (nothing when it returns nil).
func withTunables(fn func(*tunablesRecord) (*tunablesRecord, error)) error {
	if err := os.MkdirAll(filepath.Dir(tunablesFile), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(tunablesFile+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	var rec *tunablesRecord
	if b, err := os.ReadFile(tunablesFile); err == nil {
		rec = &tunablesRecord{}
		if err := json.Unmarshal(b, rec); err != nil {
			return fmt.Errorf("%s: %w (it records the host's kernel tunables before a lab node's kubelet changed them)", tunablesFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	rec, err = fn(rec)
	if err != nil {
		return err
	}
	if rec == nil {
		// Already gone when another Clean of the same nodes restored them.
		if err := os.Remove(tunablesFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return os.WriteFile(tunablesFile, b, 0o644)
}

// holdTunables records the host's values, if no running node did, and this
// node as one that runs a kubelet.
func (c Config) holdTunables() error {
	return withTunables(func(rec *tunablesRecord) (*tunablesRecord, error) {
		if rec == nil {
			rec = &tunablesRecord{Values: map[string]string{}}
			for _, k := range kernelTunables {
				b, err := os.ReadFile(sysctlPath(k))
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", k, err)
				}
				rec.Values[k] = strings.TrimSpace(string(b))
			}
		}
		if !slices.Contains(rec.Nodes, c.Dir) {
			rec.Nodes = append(rec.Nodes, c.Dir)
		}
		return rec, nil
	})
}

// releaseTunables drops this node (and nodes with no process left: a runner
// that died) and, when no node is left, puts the host's values back.
func (c Config) releaseTunables() error {
	return withTunables(func(rec *tunablesRecord) (*tunablesRecord, error) {
		if rec == nil {
			return nil, nil
		}
		rec.Nodes = slices.DeleteFunc(rec.Nodes, func(d string) bool {
			return d == c.Dir || len(Config{Dir: d}.inMountNamespace()) == 0
		})
		if len(rec.Nodes) > 0 {
			return rec, nil
		}
		var errs []error
		for k, v := range rec.Values {
			if err := os.WriteFile(sysctlPath(k), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore %s=%s: %w", k, v, err))
			}
		}
		return nil, errors.Join(errs...)
	})
}
