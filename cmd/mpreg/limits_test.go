package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
)

// TestLimitErrorsNameFlags: an error about a bound of PROTOCOL §10 names
// the bound as on the wire and the flag that sets it.
func TestLimitErrorsNameFlags(t *testing.T) {
	t.Parallel()
	port := testcluster.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	d := startDaemon(t, "server", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--demo", "--node-id", "n1",
		"--max-commands", "3", "--max-result-bytes", "1KiB")
	d.waitFor(t, "the node to answer", func() error {
		if r := mpreg(t, opts{}, "call", "whoami", "--servers", url, "--timeout", "2s"); r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	r := mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "whoami"}, {"name": "b", "fun": "whoami"}, {"name": "c", "fun": "whoami"}, {"name": "d", "fun": "whoami"}]}`},
		"run", "-", "--servers", url)
	require.Equal(t, 1, r.code)
	require.Equal(t, "INVALID_REQUEST: cmds: 4 commands exceed the limit max_commands=3 (the node's --max-commands)\n", r.stderr)

	r = mpreg(t, opts{}, "call", "echo", strings.Repeat("x", 2000), "--servers", url)
	require.Equal(t, 1, r.code)
	require.Equal(t, "PAYLOAD_TOO_LARGE: the request's results would hold more bytes than the limit max_result_bytes=1024 (the node's --max-result-bytes) (step echo)\n", r.stderr)
}
