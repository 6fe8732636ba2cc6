// Package logtail quotes the end of a component's log file in an error
// message, for the lab's processes and its real nodes alike.
package logtail

import (
	"os"
	"strings"
)

// Lines returns the last n lines of the file at path, indented under a
// heading that names it; "" when it cannot be read.
func Lines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  last lines of " + path + ":\n    " + strings.Join(lines, "\n    ")
}
