package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what `lab up` records in the state folder, so that `status` and
// `down` know what it started. `down` works without it too.
type State struct {
	Config    Config    `json:"config"`
	Ports     Ports     `json:"ports"`
	Processes []Process `json:"processes"`
}

// Ports are the loopback ports picked for this lab's components.
type Ports struct {
	Etcd              int `json:"etcd"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
}

// Process is one long-running process of the lab.
type Process struct {
	Name  string `json:"name"`
	Pid   int    `json:"pid"`
	Netns string `json:"netns,omitempty"`
	Log   string `json:"log"`
}

// Paths in the state folder.

func (c Config) statePath() string       { return filepath.Join(c.StateDir, "state.json") }
func (c Config) pkiDir() string          { return filepath.Join(c.StateDir, "pki") }
func (c Config) logDir() string          { return filepath.Join(c.StateDir, "logs") }
func (c Config) kubeconfigDir() string   { return filepath.Join(c.StateDir, "kubeconfig") }
func (c Config) pki(base string) string  { return filepath.Join(c.pkiDir(), base) }
func (c Config) logFile(n string) string { return filepath.Join(c.logDir(), n+".log") }
func (c Config) kubeconfig(n string) string {
	return filepath.Join(c.kubeconfigDir(), n+".yaml")
}

// AdminKubeconfig is the path of the lab's cluster-admin kubeconfig.
func (c Config) AdminKubeconfig() string { return c.kubeconfig("admin") }

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.Config.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.Config.statePath())
}

// ErrNotUp says there is no lab of that name.
var ErrNotUp = errors.New("lab is not up")

// LoadState reads the state of the lab whose state folder is dir.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotUp
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	return &s, nil
}

// Each lab node has its own folders, as separate machines would: the CNI
// config and plugin folders the agent writes and the runner reads, and the
// plugin's address store.

// NodeDir is node i's folder.
func (c Config) NodeDir(i int) string { return filepath.Join(c.StateDir, "nodes", c.NodeName(i)) }
