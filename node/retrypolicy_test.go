package node_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// failingFirst is a function that fails its first n calls (FUNCTION_ERROR)
// and then returns the number of calls; calls counts them.
func failingFirst(n int64, calls *atomic.Int64) func() (int64, error) {
	return func() (int64, error) {
		c := calls.Add(1)
		if c <= n {
			return 0, errors.New("not yet")
		}
		return c, nil
	}
}

// backoff100x2 is the policy of the spacing tests: 100 ms, then 200 ms.
var backoff100x2 = node.RetryPolicy{Attempts: 5, InitialBackoff: 100 * time.Millisecond, Multiplier: 2}

// requireSpacing checks that trace holds attempts 1, 2, 3 of one step,
// the first two FUNCTION_ERROR and the last ok, started at least 100 ms
// and 200 ms apart, and not wildly more.
func requireSpacing(t *testing.T, trace []schema.TraceEntry) {
	t.Helper()
	require.Len(t, trace, 3, "%+v", trace)
	for i, e := range trace {
		assert.Equal(t, int64(i+1), e.Attempt)
	}
	assert.Equal(t, string(schema.CodeFunctionError), trace[0].Code)
	assert.Equal(t, string(schema.CodeFunctionError), trace[1].Code)
	assert.Equal(t, schema.OutcomeOK, trace[2].Code)
	gap1 := time.Duration(trace[1].StartUS-trace[0].StartUS) * time.Microsecond
	gap2 := time.Duration(trace[2].StartUS-trace[1].StartUS) * time.Microsecond
	assert.GreaterOrEqual(t, gap1, 100*time.Millisecond)
	assert.GreaterOrEqual(t, gap2, 200*time.Millisecond)
	assert.Less(t, gap1, time.Second, "not wildly more than the backoff")
	assert.Less(t, gap2, 1100*time.Millisecond, "not wildly more than the backoff")
}

// A function with a retry policy that fails twice is tried again after
// 100 ms and 200 ms and succeeds; the hello advertises the policy; every
// attempt is in the trace. On the node that runs it and on a planner
// that sends it there.
func TestRetryPolicySpacing(t *testing.T) {
	s := testcluster.Server(t)
	var calls atomic.Int64
	var fails atomic.Int64 // how many calls fail from now on
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w", "worker"), func(n *node.Node) {
		require.NoError(t, n.Register("twice", func() (int64, error) {
			c := calls.Add(1)
			if fails.Add(-1) >= 0 {
				return 0, errors.New("not yet")
			}
			return c, nil
		}, node.WithRetry(backoff100x2)))
	})
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "p"), nil)
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "twice", nil, "w")
	p, _ := c.Table().Get("w")
	require.Equal(t, map[string]schema.RetryPolicy{"twice": {Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}}, p.Hello.Retry)

	nc := testcluster.Conn(t, s.ClientURL())
	for _, planner := range []string{"w", "p"} {
		t.Run("planned on "+planner, func(t *testing.T) {
			calls.Store(0)
			fails.Store(2)
			resp := decodeAs(t, request(t, nc, "mpreg.default.node."+planner+".rpc",
				[]byte(`{"trace": true, "timeout_ms": 5000, "cmds": [{"name": "s", "fun": "twice"}]}`), jsonHeader()), "application/json")
			require.Nil(t, resp["error"], "%v", resp)
			require.Equal(t, map[string]any{"s": int64(3)}, resp["results"])
			r, err := schema.ParseResponse(resp)
			require.NoError(t, err)
			for _, e := range r.Trace {
				assert.Equal(t, "w", e.Node)
			}
			requireSpacing(t, r.Trace)
		})
	}
}

// A step that still fails after the policy's attempts carries
// details.attempts; without a policy it fails after one attempt, its
// error as it was.
func TestRetryPolicyExhausted(t *testing.T) {
	s := testcluster.Server(t)
	var withPolicy, without atomic.Int64
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w"), func(n *node.Node) {
		require.NoError(t, n.Register("never", failingFirst(1000, &withPolicy),
			node.WithRetry(node.RetryPolicy{Attempts: 3, InitialBackoff: 10 * time.Millisecond})))
		require.NoError(t, n.Register("plain", failingFirst(1000, &without)))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "never", nil, "w")

	resp, err := c.Run(testwait.Ctx(t), &schema.Request{Trace: true, Cmds: []schema.Command{{Name: "s", Fun: "never"}}})
	e := requireCode(t, err, schema.CodeFunctionError)
	assert.Equal(t, "s", e.Step)
	assert.Equal(t, "w", e.Node)
	assert.Contains(t, e.Message, "not yet")
	assert.Equal(t, int64(3), detail(t, e, "attempts"))
	assert.Equal(t, int64(3), withPolicy.Load())
	require.NotNil(t, resp)
	assert.Len(t, resp.Trace, 3)

	resp, err = c.Run(testwait.Ctx(t), &schema.Request{Trace: true, Cmds: []schema.Command{{Name: "s", Fun: "plain"}}})
	e = requireCode(t, err, schema.CodeFunctionError)
	assert.Nil(t, e.Details, "no details.attempts without a policy")
	assert.Equal(t, int64(1), without.Load())
	assert.Len(t, resp.Trace, 1)
}

// Retries never wait past the request's deadline: with a 300 ms budget
// and a 1 s backoff the step fails at once, with its own error.
func TestRetryPolicyDeadline(t *testing.T) {
	s := testcluster.Server(t)
	var calls atomic.Int64
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w"), func(n *node.Node) {
		require.NoError(t, n.Register("slowretry", failingFirst(1000, &calls),
			node.WithRetry(node.RetryPolicy{Attempts: 5, InitialBackoff: time.Second})))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "slowretry", nil, "w")
	start := time.Now()
	_, err := c.Run(testwait.Ctx(t), &schema.Request{TimeoutMS: 300, Cmds: []schema.Command{{Name: "s", Fun: "slowretry"}}})
	took := time.Since(start)
	e := requireCode(t, err, schema.CodeFunctionError)
	assert.Equal(t, int64(1), detail(t, e, "attempts"))
	assert.Less(t, took, 800*time.Millisecond, "did not wait the 1 s backoff")
	assert.Equal(t, int64(1), calls.Load())
}

// A cancel during a backoff ends the step at once: the planner's step
// ends CANCELLED long before the backoff would have.
func TestRetryPolicyCancelDuringBackoff(t *testing.T) {
	s := testcluster.Server(t)
	called := make(chan struct{}, 8)
	stepDone := make(chan planner.StepEvent, 8)
	logs := &testwait.Buffer{} // the planner logs each retry before its backoff
	cfg := testcluster.NodeConfig(t, "w")
	cfg.Hooks.Observer = planner.ObserverFunc(func(ev planner.StepEvent) { stepDone <- ev })
	cfg.Hooks.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	testcluster.Node(t, s.ClientURL(), cfg, func(n *node.Node) {
		require.NoError(t, n.Register("wait", func() error {
			called <- struct{}{}
			return errors.New("no")
		}, node.WithRetry(node.RetryPolicy{Attempts: 3, InitialBackoff: time.Minute})))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "wait", nil, "w")

	ctx, cancel := context.WithCancel(testwait.Ctx(t))
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, &schema.Request{ID: "cancel-me", TimeoutMS: 120_000, Cmds: []schema.Command{{Name: "s", Fun: "wait"}}})
		done <- err
	}()
	testwait.Recv(t, called, "the first attempt")
	testwait.For(t, "the backoff", func() error {
		if !strings.Contains(logs.String(), `msg="step retried by policy"`) {
			return errors.New("no retry logged yet")
		}
		return nil
	})
	start := time.Now()
	cancel()
	requireCode(t, testwait.Recv(t, done, "the caller's answer"), schema.CodeCancelled)
	ev := testwait.Recv(t, stepDone, "the step to end on the planner")
	require.NotNil(t, ev.Err)
	assert.Equal(t, schema.CodeCancelled, ev.Err.Code)
	assert.Equal(t, 1, ev.Attempts)
	assert.Less(t, time.Since(start), 5*time.Second, "well before the minute's backoff")
}

// A function that panics is tried again by its policy.
func TestRetryPolicyPanic(t *testing.T) {
	s := testcluster.Server(t)
	var calls atomic.Int64
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w"), func(n *node.Node) {
		require.NoError(t, n.Register("shaky", func() string {
			if calls.Add(1) == 1 {
				panic("first time")
			}
			return "steady"
		}, node.WithRetry(node.RetryPolicy{Attempts: 2, InitialBackoff: 5 * time.Millisecond})))
	})
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "shaky", nil, "w")
	resp, err := c.Run(testwait.Ctx(t), &schema.Request{Trace: true, Cmds: []schema.Command{{Name: "s", Fun: "shaky"}}})
	require.NoError(t, err)
	assert.Equal(t, "steady", resp.Results["s"])
	require.Len(t, resp.Trace, 2)
	assert.Equal(t, string(schema.CodeFunctionPanic), resp.Trace[0].Code)
	assert.Equal(t, schema.OutcomeOK, resp.Trace[1].Code)
}

// A step whose attempt passed its own deadline (RetryAfter: a TIMEOUT of
// the step, not of the request) with no other node to take it
// (NODE_UNAVAILABLE once re-routing gave up) is tried again by the
// policy.
func TestRetryPolicyStepTimeout(t *testing.T) {
	s := testcluster.Server(t)
	var calls atomic.Int64
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w"), func(n *node.Node) {
		require.NoError(t, n.Register("stall", func(ctx context.Context) (string, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done() // the attempt's deadline
				return "", ctx.Err()
			}
			return "answered", nil
		}, node.RetryAfter(100*time.Millisecond), node.WithRetry(node.RetryPolicy{Attempts: 2, InitialBackoff: 10 * time.Millisecond})))
	})
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "p"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "stall", nil, "w")
	testcluster.WaitForRoute(t, c.Table(), "echo", nil, "w", "p")
	resp := decodeAs(t, request(t, nc, "mpreg.default.node.p.rpc",
		[]byte(`{"trace": true, "timeout_ms": 5000, "cmds": [{"name": "s", "fun": "stall"}]}`), jsonHeader()), "application/json")
	require.Nil(t, resp["error"], "%v", resp)
	assert.Equal(t, map[string]any{"s": "answered"}, resp["results"])
	assert.Equal(t, int64(2), calls.Load())
	r, err := schema.ParseResponse(resp)
	require.NoError(t, err)
	require.Len(t, r.Trace, 2)
	assert.Equal(t, string(schema.CodeTimeout), r.Trace[0].Code)
	assert.Equal(t, schema.OutcomeOK, r.Trace[1].Code)
}

// Register refuses a policy out of its bounds.
func TestRetryPolicyRegisterBounds(t *testing.T) {
	s := testcluster.Server(t)
	n := testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "w"), nil)
	for _, p := range []node.RetryPolicy{
		{},
		{Attempts: 101},
		{Attempts: 2, InitialBackoff: -time.Microsecond},
		{Attempts: 2, InitialBackoff: 25 * time.Hour},
		{Attempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Millisecond},
		{Attempts: 2, Multiplier: 0.5},
		{Attempts: 2, Jitter: 1.1},
	} {
		err := n.Register("f", func() {}, node.WithRetry(p))
		require.ErrorIs(t, err, node.ErrInvalidConfig, "%+v", p)
		var e *schema.Error
		require.ErrorAs(t, err, &e, "%+v", p)
		assert.Contains(t, e.Message, "retry.f.")
	}
	require.NoError(t, n.Register("f", func() {}, node.WithRetry(node.RetryPolicy{Attempts: 1})), "one attempt is no retry")
	require.NoError(t, n.Register("h", node.Func(func(_ context.Context, s string) (string, error) { return s, nil }),
		node.WithRetry(node.RetryPolicy{Attempts: 3, InitialBackoff: 50 * time.Millisecond})), "node.Func takes a policy")
	require.NoError(t, n.Register("g", func() {}, node.WithRetry(node.RetryPolicy{Attempts: 100, InitialBackoff: time.Second,
		MaxBackoff: 24 * time.Hour, Multiplier: 100, Jitter: 1})))
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "g", nil, "w")
	p, _ := c.Table().Get("w")
	assert.Equal(t, map[string]schema.RetryPolicy{
		"g": {Attempts: 100, InitialBackoffMS: 1000, MaxBackoffMS: 86_400_000, Multiplier: 100, Jitter: 1},
		"h": {Attempts: 3, InitialBackoffMS: 50},
	}, p.Hello.Retry, "f's one attempt is not advertised")
}
