package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/mpreg/mpreg/node"
)

// versionCmd is `mpreg version`.
type versionCmd struct{}

// Run prints the version line.
func (versionCmd) Run(e *env) error {
	_, err := fmt.Fprintln(e.stdout, versionLine())
	return err
}

// versionLine is "mpreg VERSION (commit C[, modified], BUILT, GO)" from the
// binary's build information: the commit is known when it was built from
// a git checkout.
func versionLine() string {
	var extra []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			c := "commit " + rev[:min(12, len(rev))]
			if settings["vcs.modified"] == "true" {
				c += ", modified"
			}
			extra = append(extra, c)
			if t := settings["vcs.time"]; t != "" {
				extra = append(extra, t)
			}
		}
		extra = append(extra, bi.GoVersion)
	}
	return fmt.Sprintf("mpreg %s (%s)", node.Version, strings.Join(extra, ", "))
}
