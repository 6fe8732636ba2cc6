package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ConflistName is the file berth-agent writes into the runtime's CNI folder.
const ConflistName = "10-berth.conflist"

// Conflist renders the network configuration list the runtime reads.
func Conflist(network string, conf NetConf) ([]byte, error) {
	conf.Type = PluginType
	conf.Name = network
	conf.CNIVersion = ""
	plugin, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(plugin, &m); err != nil {
		return nil, err
	}
	delete(m, "cniVersion")
	delete(m, "name")
	for _, k := range []string{"dns", "runtimeConfig"} {
		if v, ok := m[k].(map[string]any); ok && len(v) == 0 {
			delete(m, k)
		}
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.1.0",
		"name":       network,
		"plugins":    []any{m},
	}, "", "  ")
}

// WriteAtomic replaces path with data so that a reader sees the old file or
// the new one, never a part. It reports whether anything changed.
func WriteAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("replace %s: %w", path, err)
	}
	return true, nil
}

// InstallPlugin copies the plugin binary into the runtime's plugin folder,
// atomically, when it differs from what is there.
func InstallPlugin(src, binDir string) (bool, error) {
	f, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("plugin binary: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return false, err
	}
	return WriteAtomic(filepath.Join(binDir, PluginType), data, 0o755)
}
