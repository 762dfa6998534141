package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMakeDemoSaysItBuilds: `make demo` prints a line before it compiles,
// so that a cold build does not look like a hang.
func TestMakeDemoSaysItBuilds(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("make", "-s", "-n", "-C", "../..", "demo").CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.GreaterOrEqual(t, len(lines), 3, string(out))
	require.True(t, strings.HasPrefix(lines[0], `echo "Building bin/mpreg`), "the first thing make demo does is say so: %q", lines[0])
	build := -1
	for i, l := range lines {
		if strings.Contains(l, " build ") && strings.Contains(l, "./cmd/mpreg") {
			build = i
		}
	}
	require.Positive(t, build, "make demo builds after saying so:\n%s", out)
	require.Equal(t, "bin/mpreg demo", lines[len(lines)-1])
}
