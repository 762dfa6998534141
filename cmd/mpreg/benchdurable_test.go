package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchDurable: `mpreg bench --durable` adds the durable scenarios and
// their targets, on the embedded server's JetStream.
func TestBenchDurable(t *testing.T) {
	t.Parallel()
	r := mpreg(t, opts{}, "bench", "--duration", "20ms", "--concurrency", "2", "--durable")
	require.Equal(t, 0, r.code, r.stderr)
	for _, row := range []string{`durable-1`, `durable-chain-10`} {
		assert.Regexp(t, `(?m)^\s+`+row+`(\s+[0-9.]+(µs|ms)){3}\s+[1-9][0-9]*\s`, r.stdout)
	}
	assert.Regexp(t, `(?m)^\s+(PASS|MISS)\s+durable-1 p50 - client-run p50\s`, r.stdout)
	assert.Regexp(t, `(?m)^\s+(PASS|MISS)\s+durable-1 req/s, 2 requesters\s`, r.stdout)
}
