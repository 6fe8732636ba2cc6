// Package sysctl sets kernel parameters under /proc/sys the way berth-agent
// needs them: read first, write only when the value differs. A node (or a
// privileged init container) that already set them lets the agent run
// without write access to /proc/sys.
package sysctl

import (
	"bytes"
	"fmt"
	"os"
)

// Ensure makes the parameter at path (e.g. /proc/sys/net/ipv4/ip_forward)
// hold value. It writes only when the value differs; a missing path is
// returned as an error wrapping os.ErrNotExist.
func Ensure(path, value string) error {
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("%s is %q, want %q: %w", path, bytes.TrimSpace(cur), value, err)
	}
	return nil
}
