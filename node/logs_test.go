package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestFailedRequestLoggedByPlanner: a request whose step fails on another
// node is logged at info by its planner, with the request id, the code,
// the step and the node it failed on.
func TestFailedRequestLoggedByPlanner(t *testing.T) {
	s := testcluster.Server(t)
	var out testwait.Buffer
	cfg := testcluster.NodeConfig(t, "planner")
	cfg.Hooks.Logger = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	planner := testcluster.Node(t, s.ClientURL(), cfg, nil)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker", "w"), func(n *node.Node) {
		require.NoError(t, n.Register("broken", func() error { return errors.New("it broke") }))
	})
	testcluster.WaitForRoute(t, planner.Table(), "broken", []string{"w"}, "worker")
	// The rpc queue group may give a request to either node: send until
	// "planner" has planned one.
	cl := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	testcluster.WaitFor(t, "the planner node to log a failed request", func() error {
		_, err := cl.Run(context.Background(), &schema.Request{Cmds: []schema.Command{{Name: "b", Fun: "broken", Args: []any{}, Locs: []string{"w"}}}})
		require.ErrorIs(t, err, schema.ErrFunctionError)
		if !strings.Contains(out.String(), `"msg":"request failed"`) {
			return errors.New("not yet")
		}
		return nil
	})
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec["msg"] != "request failed" {
			continue
		}
		require.Equal(t, "INFO", rec["level"])
		require.NotEmpty(t, rec["request_id"])
		require.Equal(t, "FUNCTION_ERROR", rec["code"])
		require.Equal(t, "b", rec["step"])
		require.Equal(t, "worker", rec["step_node"])
		require.Equal(t, "planner", rec["node"])
		return
	}
	t.Fatal("no request failed line")
}
