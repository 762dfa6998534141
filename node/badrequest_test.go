package node_test

// docs/PROTOCOL.md §3 (missing or mistyped keys, unknown keys) and §4/§5
// (INVALID_REQUEST), sent with nothing but nats.go.

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

func TestInvalidRequests(t *testing.T) {
	srv := testcluster.Server(t)
	var sideEffects atomic.Int64
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Limits.MaxCommands = 3
	n := testcluster.Node(t, srv.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("touch", func() int64 { return sideEffects.Add(1) }))
	})
	nc := testcluster.Conn(t, srv.ClientURL())

	cases := []struct {
		name  string
		body  string
		check func(t *testing.T, e map[string]any)
	}{
		{"malformed JSON", `{"cmds": [`, nil},
		{"not a map", `[1, 2]`, nil},
		{"cmds missing", `{"id": "x1"}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds", details(t, e)["key"])
			require.Contains(t, e["message"], "cmds")
		}},
		{"cmds empty", `{"cmds": []}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds", details(t, e)["key"])
		}},
		{"cmds not a list", `{"cmds": {"a": 1}}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds", details(t, e)["key"])
		}},
		{"args of the wrong type", `{"cmds": [{"name": "a", "fun": "echo", "args": "x"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds[0].args", details(t, e)["key"])
			require.Contains(t, e["message"], "cmds[0].args")
		}},
		{"kwargs of the wrong type", `{"cmds": [{"name": "a", "fun": "echo"}, {"name": "b", "fun": "echo", "kwargs": [1]}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds[1].kwargs", details(t, e)["key"])
		}},
		{"name missing", `{"cmds": [{"fun": "echo", "args": [1]}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds[0].name", details(t, e)["key"])
		}},
		{"fun missing", `{"cmds": [{"name": "a"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds[0].fun", details(t, e)["key"])
		}},
		{"locs not strings", `{"cmds": [{"name": "a", "fun": "echo", "locs": [1]}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds[0].locs[0]", details(t, e)["key"])
		}},
		{"timeout_ms not an integer", `{"cmds": [{"name": "a", "fun": "echo"}], "timeout_ms": "soon"}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "timeout_ms", details(t, e)["key"])
		}},
		{"results unknown", `{"cmds": [{"name": "a", "fun": "echo"}], "results": "some"}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "results", details(t, e)["key"])
		}},
		{"duplicate names", `{"cmds": [{"name": "a", "fun": "touch"}, {"name": "a", "fun": "touch"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "a", details(t, e)["name"])
		}},
		{"unknown $ref", `{"cmds": [{"name": "a", "fun": "echo", "args": [{"$ref": "ghost"}]}, {"name": "b", "fun": "touch"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "ghost", details(t, e)["ref"])
			require.Contains(t, e["message"], "ghost")
		}},
		{"$ref with an extra key", `{"cmds": [{"name": "a", "fun": "touch"}, {"name": "b", "fun": "echo", "args": [{"$ref": "a", "paht": "/x"}]}]}`, nil},
		{"self reference", `{"cmds": [{"name": "a", "fun": "echo", "args": ["a"]}, {"name": "t", "fun": "touch"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, []any{"a"}, details(t, e)["cycle"])
		}},
		{"cycle", `{"cmds": [
			{"name": "t", "fun": "touch"},
			{"name": "a", "fun": "echo", "args": ["c"]},
			{"name": "b", "fun": "echo", "kwargs": {"x": "a"}},
			{"name": "c", "fun": "echo", "args": [{"$ref": "b"}]}]}`, nil}, // 4 commands: over the limit first
		{"too many commands", `{"cmds": [{"name": "a", "fun": "touch"}, {"name": "b", "fun": "touch"},
			{"name": "c", "fun": "touch"}, {"name": "d", "fun": "touch"}]}`, func(t *testing.T, e map[string]any) {
			require.Equal(t, "cmds", details(t, e)["key"])
			require.Equal(t, int64(3), details(t, e)["max"])
		}},
		{"cycle through args, kwargs and $ref", `{"cmds": [
			{"name": "a", "fun": "echo", "args": ["c"]},
			{"name": "b", "fun": "echo", "kwargs": {"x": "a"}},
			{"name": "c", "fun": "echo", "args": [{"$ref": "b"}]}]}`, func(t *testing.T, e map[string]any) {
			cyc, ok := details(t, e)["cycle"].([]any)
			require.True(t, ok, "details.cycle is a list: %#v", e)
			require.ElementsMatch(t, []any{"a", "b", "c"}, cyc)
		}},
	}
	good := `{"cmds": [{"name": "ok", "fun": "echo", "args": ["fine"]}]}`
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := rpcJSON(t, nc, tc.body)
			e := wireError(t, resp)
			require.Equal(t, "INVALID_REQUEST", e["code"], "%#v", e)
			if tc.check != nil {
				tc.check(t, e)
			}
			res, ok := resp["results"].(map[string]any)
			require.True(t, ok, "results is present (empty) on failure: %#v", resp)
			require.Empty(t, res, "nothing ran")
			require.Zero(t, sideEffects.Load(), "no command of an invalid request runs")

			// The node keeps serving.
			ok2 := rpcJSON(t, nc, good)
			require.Nil(t, ok2["error"])
			require.Equal(t, map[string]any{"ok": "fine"}, ok2["results"])
		})
	}

	// The id is echoed on errors when it could be read.
	resp := rpcJSON(t, nc, `{"id": "x1"}`)
	require.Equal(t, "x1", resp["id"])
	// … wherever it stands, past a bad command, and as the body's last
	// copy of the key.
	resp = rpcJSON(t, nc, `{"id": "x0", "cmds": [{"fun": "echo"}], "id": "x2"}`)
	require.Equal(t, "x2", resp["id"])
	require.Equal(t, "cmds[0].name", details(t, wireError(t, resp))["key"])
	resp = rpcJSON(t, nc, `{"id": "x3", "cmds": [{"name": "a", "fun": "echo"}], "trailing": 1} x`)
	require.Empty(t, resp["id"], "a body that does not decode has no id to echo")

	// Unknown keys are ignored (forward compatibility).
	resp = rpcJSON(t, nc, `{"cmds": [{"name": "a", "fun": "echo", "args": [1], "future": true}], "priority": 9, "sampling": {"x": 1}}`)
	require.Nil(t, resp["error"])
	require.Equal(t, map[string]any{"a": int64(1)}, resp["results"])
	require.Positive(t, n.Stats().RequestErrors)
}
