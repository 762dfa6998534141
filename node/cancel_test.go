package node_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
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
		require.NoError(t, n.Register("failsoon", func(_ context.Context) error {
			testwait.Recv(t, started, "the slow step to start")
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

	_, err := c.Run(testwait.Ctx(t), &schema.Request{
		TimeoutMS: 60_000,
		Cmds: []schema.Command{
			{Name: "|slow", Fun: "slow", Locs: []string{"b"}},
			{Name: "|fail", Fun: "failsoon", Locs: []string{"a"}},
		},
	})
	e := requireCode(t, err, schema.CodeFunctionError)
	require.Equal(t, "|fail", e.Step)
	require.ErrorIs(t, testwait.Recv(t, cancelled, "the remote step's context to end"), context.Canceled,
		"cancelled by its planner, not by its 60 s deadline")
}

// A caller that gives up on a direct call cancels the step on the node that
// runs it (the client's exec goes through the same mesh.Execer as planners'),
// an Inline function's too (it runs under a context of its own, see
// stepCtx).
func TestDirectCallCancelReachesNode(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(map[bool]string{false: "worker", true: "inline"}[inline], func(t *testing.T) {
			s := testcluster.Server(t)
			started := make(chan struct{})
			cancelled := make(chan error, 1)
			var opts []node.FuncOption
			if inline {
				opts = append(opts, node.Inline())
			}
			testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker"), func(n *node.Node) {
				require.NoError(t, n.Register("slow", func(ctx context.Context) error {
					close(started)
					<-ctx.Done()
					cancelled <- ctx.Err()
					return ctx.Err()
				}, opts...))
			})
			c := testcluster.Client(t, s.ClientURL(), client.Config{})
			testcluster.WaitForRoute(t, c.Table(), "slow", nil, "worker")

			ctx, cancel := context.WithCancel(testwait.Ctx(t))
			go func() {
				<-started
				cancel()
			}()
			_, err := c.Call(ctx, "slow", nil, client.WithTimeout(60*time.Second))
			requireCode(t, err, schema.CodeCancelled)
			require.ErrorIs(t, testwait.Recv(t, cancelled, "the node's step context to end"), context.Canceled)
		})
	}
}

// A cancel names the attempt it is for: a caller reusing another caller's
// rpc id (so the same exec id) cannot cancel that caller's step.
func TestCancelMatchesTheAttempt(t *testing.T) {
	s := testcluster.Server(t)
	var ctxs sync.Map // tag → the step's context
	started := make(chan string, 2)
	cancelled := make(chan string, 2)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", func(ctx context.Context, tag string) error {
			ctxs.Store(tag, ctx)
			started <- tag
			<-ctx.Done()
			cancelled <- tag
			return ctx.Err()
		}))
	})
	nc := testcluster.Conn(t, s.ClientURL())
	for _, attempt := range []string{"mine-1", "theirs-7"} {
		body := []byte(`{"cluster":"default","id":"dup/a","attempt":"` + attempt + `","fun":"slow","args":["` + attempt + `"],"kwargs":{}}`)
		go func() { _, _ = nc.RequestWithContext(testwait.Ctx(t), execSubject("worker"), body) }()
	}
	testwait.Recv(t, started, "a step to start")
	testwait.Recv(t, started, "the other step to start")

	require.NoError(t, nc.Publish("mpreg.default.node.worker.cancel", []byte(`{"cluster":"default","id":"dup/a","attempt":"theirs-7"}`)))
	require.Equal(t, "theirs-7", testwait.Recv(t, cancelled, "the named attempt to be cancelled"))
	mine, _ := ctxs.Load("mine-1")
	require.NoError(t, mine.(context.Context).Err(), "the other caller's step with the same exec id still runs")

	require.NoError(t, nc.Publish("mpreg.default.node.worker.cancel", []byte(`{"cluster":"default","id":"dup/a","attempt":"mine-1"}`)))
	require.Equal(t, "mine-1", testwait.Recv(t, cancelled, "the second attempt to be cancelled"))
}

// A node that stops while running a peer's step answers NODE_UNAVAILABLE
// (another node may take it), not CANCELLED.
func TestClosingNodeAnswersNodeUnavailable(t *testing.T) {
	s := testcluster.Server(t)
	started := make(chan struct{}, 1)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "worker"), func(n *node.Node) {
		require.NoError(t, n.Register("slow", func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}))
	})
	nc := testcluster.Conn(t, s.ClientURL())
	replied := make(chan map[string]any, 1)
	go func() {
		m, err := nc.RequestWithContext(testwait.Ctx(t), execSubject("worker"),
			[]byte(`{"cluster":"default","id":"r/a","fun":"slow","args":[],"kwargs":{}}`))
		if err != nil {
			replied <- map[string]any{"transport": err.Error()}
			return
		}
		replied <- decodeAs(t, m, codec.JSONType)
	}()
	testwait.Recv(t, started, "the step to start")
	n.Close()
	require.Equal(t, "NODE_UNAVAILABLE", wireError(t, testwait.Recv(t, replied, "the exec reply"))["code"])
}

// TestCancelAnswered: a cancel sent with a reply subject is answered by
// the node that planned the request, {"id", "node"}; for an id no node
// knows, nothing answers. Client.CancelWait collects the answers.
func TestCancelAnswered(t *testing.T) {
	s := testcluster.Server(t)
	started := make(chan struct{}, 2)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "p1"), func(n *node.Node) {
		require.NoError(t, n.Register("block", func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})
	nc := testcluster.Conn(t, s.ClientURL())

	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "block", nil, client.WithID("answered-1"), client.WithTimeout(30*time.Second))
		done <- err
	}()
	// Planned and running: a cancel that came before would stop it too,
	// unanswered (no node knew the id yet).
	testwait.Recv(t, started, "the step to run")
	nodes, err := c.CancelWait(testwait.Ctx(t), "answered-1", 50*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, []string{"p1"}, nodes)
	requireCode(t, testwait.Recv(t, done, "the cancelled call"), schema.CodeCancelled)

	// The wire form, from plain NATS; and silence for an unknown id.
	go func() {
		_, err := c.Call(context.Background(), "block", nil, client.WithID("answered-2"), client.WithTimeout(30*time.Second))
		done <- err
	}()
	testwait.Recv(t, started, "the step to run")
	m, err := nc.Request("mpreg.default.cancel", []byte(`{"id": "answered-2"}`), 5*time.Second)
	require.NoError(t, err)
	answer, err := codec.JSON.Decode(m.Data)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"id": "answered-2", "node": "p1"}, answer)
	requireCode(t, testwait.Recv(t, done, "the cancelled call"), schema.CodeCancelled)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	nodes, err = c.CancelWait(ctx, "nobody-knows", 50*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, nodes)
}
