// Package version reports the build's version, stamped by the linker.
package version

import (
	"fmt"
	"runtime"
)

// These are set with -ldflags "-X" by `make build`; a plain `go build` leaves
// the defaults, which say so.
var (
	version = "v0.0.0-dev"
	commit  = "unknown"
)

// Info describes one build of a Berth binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this binary's build information.
func Get() Info {
	return Info{
		Version:   version,
		Commit:    commit,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// String is the one-line form printed by `--version` and `berthctl version`.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", i.Version, i.Commit, i.GoVersion, i.Platform)
}
