package main

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bench --js runs the npm package's bench scripts on the run's server
// and reports their figures against nats.js raw request/reply, with the
// TypeScript targets.
func TestBenchJS(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil || !built("../../sdk/js") {
		if os.Getenv("MPREG_REQUIRE_JS") != "" {
			t.Fatalf("node or the built package missing (node: %v): run `make js-deps`", err)
		}
		t.Skip("node (Node.js) or the built mpreg npm package is missing: run `make js-deps`")
	}
	// Node.js starts three processes and warms each path up: give it
	// longer than a Go-only bench on a loaded machine.
	r := mpreg(t, opts{wait: time.Minute}, "bench", "--duration", "20ms", "--concurrency", "2", "--js", "../../sdk/js")
	require.Equal(t, 0, r.code, r.stderr)
	for _, row := range []string{"ts-call-json", "ts-call-msgpack", "ts-node-exec", "ts-node-via-planner"} {
		assert.Regexp(t, `(?m)^\s+`+row+`\s+[0-9.]+(µs|ms)\s+nats\.js raw( relay)?\s+[0-9.]+(µs|ms)\s+[0-9.]+x$`, r.stdout)
		assert.Regexp(t, `(?m)^\s+(PASS|MISS)\s+`+row+` p50 / nats\.js raw( relay)? p50\s`, r.stdout)
	}
	r = mpreg(t, opts{}, "bench", "--duration", "20ms", "--js", t.TempDir())
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "the package is not built")
}

// built reports whether the npm package in dir is built.
func built(dir string) bool {
	_, err := os.Stat(dir + "/dist/index.js")
	return err == nil
}
