package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchObjects: `mpreg bench --objects` ends with the values-by-
// reference phase, of --object-size and --object-rounds, on the embedded
// server's JetStream.
func TestBenchObjects(t *testing.T) {
	t.Parallel()
	r := mpreg(t, opts{}, "bench", "--duration", "20ms", "--concurrency", "2", "--objects", "--object-size", "2MiB", "--object-rounds", "1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "values by reference: 2 MiB made by a step on node a, taken by a step on node b; 1 rounds alternating")
	assert.Regexp(t, `(?m)^\s+mpreg-a-to-b\s+mpreg-bench-node-b\s+2\.0\d /\s+0\.\d\d$`, r.stdout)
	assert.Regexp(t, `(?m)^\s+PASS\s+MiB received by all connections / value\s+1\.0\dx`, r.stdout)

	r = mpreg(t, opts{}, "bench", "--duration", "20ms", "--objects", "--object-rounds=-1")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "mpreg: bench: invalid config: negative object rounds -1")
}
