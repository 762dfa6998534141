package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsCommands: the shell sessions of the README run, in order, from
// the repository's root (no "cd" that a later command would repeat), and
// the secure walk-through signals processes by pid, never every mpreg
// process of the machine by name.
func TestDocsCommands(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	for _, line := range strings.Split(string(readme), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			require.NotRegexp(t, `(^|&&|;)\s*cd\s`, cmd, "README commands run from the root: %q", line)
		}
	}
	require.Contains(t, string(readme), "$ node examples/js/caller.mjs\n")

	secure, err := os.ReadFile("../../examples/secure/README.md")
	require.NoError(t, err)
	require.NotRegexp(t, regexp.MustCompile(`\b(pkill|killall)\b`), string(secure))
	require.Contains(t, string(secure), `kill -HUP "$(cat n1.pid)"`)
}
