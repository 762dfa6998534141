package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// A step running on another node is cancelled when a sibling step fails:
// the planner sends node.<id>.cancel and the handler's context ends long
// before the request's deadline.
func TestRemoteStepCancelledWhenSiblingFails(t *testing.T) {
	s := testcluster.Server(t)
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "planner-a", "a"), func(n *node.Node) {
		require.NoError(t, n.Register("failsoon", func(ctx context.Context) error {
			recv(t, started, "the slow step to start")
			return errors.New("sibling failed")
		}))
	})
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker-b", "b"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			cancelled <- ctx.Err()
			return ctx.Err()
		}))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "slow", []string{"b"}, "worker-b")
	testcluster.WaitForRoute(t, c.Table(), "failsoon", []string{"a"}, "planner-a")

	_, err := c.Run(testCtx(t), &schema.Request{
		TimeoutMS: 60_000,
		Cmds: []schema.Command{
			{Name: "|slow", Fun: "slow", Locs: []string{"b"}},
			{Name: "|fail", Fun: "failsoon", Locs: []string{"a"}},
		},
	})
	e := requireCode(t, err, schema.CodeFunctionError)
	require.Equal(t, "|fail", e.Step)
	require.ErrorIs(t, recv(t, cancelled, "the remote step's context to end"), context.Canceled,
		"cancelled by its planner, not by its 60 s deadline")
}

// A caller that gives up on a direct call cancels the step on the node that
// runs it (the client's exec goes through the same mesh.Execer as planners').
func TestDirectCallCancelReachesNode(t *testing.T) {
	s := testcluster.Server(t)
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			cancelled <- ctx.Err()
			return ctx.Err()
		}))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "slow", nil, "worker")

	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Call(ctx, "slow", nil, client.WithTimeout(60*time.Second))
	requireCode(t, err, schema.CodeCancelled)
	require.ErrorIs(t, recv(t, cancelled, "the node's step context to end"), context.Canceled)
}
