package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testbytes"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

var (
	pattern = testbytes.Pattern
	hexSHA  = testbytes.SHA256
)

// jsCluster starts a NATS server with JetStream and a node with data
// functions, and returns the client URL.
func jsCluster(t *testing.T) string {
	t.Helper()
	s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, n.Register("make", func(size, seed int) []byte { return pattern(size, seed) }))
		require.NoError(t, n.Register("digest", func(b []byte) string { return hexSHA(b) }))
		require.NoError(t, n.Register("same", func(x any) any { return x }))
	})
	return s.ClientURL()
}

// big is over the inline limit (256 KiB), so values of this size pass by
// reference.
const big = 600 << 10

// TestCallFileArgument: @FILE sends a file's bytes (by reference when
// big), @- stdin's, @@X the string @X; a missing file is a usage error.
func TestCallFileArgument(t *testing.T) {
	t.Parallel()
	url := jsCluster(t)
	dir := t.TempDir()
	data := pattern(big, 2)
	file := filepath.Join(dir, "in.bin")
	require.NoError(t, os.WriteFile(file, data, 0o600))

	r := mpreg(t, opts{}, "call", "--servers", url, "digest", "@"+file)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, `"`+hexSHA(data)+`"`+"\n", r.stdout)

	r = mpreg(t, opts{stdin: "hello"}, "call", "--servers", url, "digest", "--", "@-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, `"`+hexSHA([]byte("hello"))+`"`+"\n", r.stdout)

	r = mpreg(t, opts{}, "call", "--servers", url, "same", "@@"+file)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, `"@`+file+`"`+"\n", r.stdout)
	r = mpreg(t, opts{}, "call", "--servers", url, "same", "--kw", "x=@"+file+".missing")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "in.bin.missing: open")
}

// TestCallOut: -o FILE writes a binary result as its bytes (fetched by
// reference when big), another value as the JSON mpreg prints; mpreg run
// -o writes the response's one result and leaves it out of the response
// printed.
func TestCallOut(t *testing.T) {
	t.Parallel()
	url := jsCluster(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	r := mpreg(t, opts{}, "call", "--servers", url, "make", strconv.Itoa(big), "4", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, pattern(big, 4), got)

	// A file's bytes through a function and back: by reference both ways.
	round := filepath.Join(dir, "round.bin")
	r = mpreg(t, opts{}, "call", "--servers", url, "same", "@"+out, "--out", round)
	require.Equal(t, 0, r.code, r.stderr)
	got, err = os.ReadFile(round)
	require.NoError(t, err)
	assert.Equal(t, pattern(big, 4), got)

	js := filepath.Join(dir, "out.json")
	r = mpreg(t, opts{}, "call", "--servers", url, "same", `{"a":[1,"b"]}`, "-o", js)
	require.Equal(t, 0, r.code, r.stderr)
	got, err = os.ReadFile(js)
	require.NoError(t, err)
	assert.Equal(t, "{\n  \"a\": [\n    1,\n    \"b\"\n  ]\n}\n", string(got))

	req := `{"cmds": [{"name": "m", "fun": "make", "args": [` + strconv.Itoa(big) + `, 6]}]}`
	runOut := filepath.Join(dir, "run.bin")
	r = mpreg(t, opts{stdin: req}, "run", "--servers", url, "-", "-o", runOut)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]any{}, decode(t, r.stdout).(map[string]any)["results"])
	got, err = os.ReadFile(runOut)
	require.NoError(t, err)
	assert.Equal(t, pattern(big, 6), got)

	two := `{"cmds": [{"name": "a", "fun": "same", "args": [1]}, {"name": "b", "fun": "same", "args": [2]}]}`
	r = mpreg(t, opts{stdin: two}, "run", "--servers", url, "-", "-o", runOut)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "the response has 2 results; -o takes a request with one")
}
