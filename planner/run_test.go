package planner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// wait is the bound on every wait for a goroutine in these tests; it is
// never reached when the code under test is right.
const wait = 10 * time.Second

type runResult struct {
	results map[string]any
	err     *schema.Error
}

// runAsync runs p on r in a goroutine and returns a channel that delivers
// its outcome.
func runAsync(ctx context.Context, r *planner.Runner, p *planner.Plan) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		res, err := runOf(ctx, r, p)
		ch <- runResult{res, err}
	}()
	return ch
}

func TestRunResultsSinksAndAll(t *testing.T) {
	const cmds = `"cmds": [
		{"name": "a", "fun": "echo", "args": [1]},
		{"name": "b", "fun": "echo", "args": ["a"]},
		{"name": "c", "fun": "echos", "args": ["a", "b"]},
		{"name": "d", "fun": "echo", "args": ["D"]}]`
	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}

	for _, js := range []string{`{` + cmds + `}`, `{"results": "sinks", ` + cmds + `}`} {
		got, err := runOf(context.Background(), r, mustPlan(t, js))
		require.Nil(t, err)
		assert.Equal(t, map[string]any{"c": []any{int64(1), int64(1)}, "d": "D"}, got)
	}

	p := mustPlan(t, `{"results": "all", `+cmds+`}`)
	require.True(t, p.All)
	got, err := runOf(context.Background(), r, p)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"a": int64(1), "b": int64(1), "c": []any{int64(1), int64(1)}, "d": "D"}, got)
}

func TestRunNilResultIsKept(t *testing.T) {
	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}
	got, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo"}]}`))
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"a": nil}, got)
}

func TestRunPartialResultsOnFailure(t *testing.T) {
	p := mustPlan(t, `{"cmds": [
		{"name": "a",    "fun": "echo", "args": ["A"]},
		{"name": "b",    "fun": "fail", "args": ["a"]},
		{"name": "c",    "fun": "echo", "args": ["b"]}]}`)
	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1", "n2"), Executor: f}
	got, err := runOf(context.Background(), r, p)
	require.NotNil(t, err)
	assert.True(t, errors.Is(err, schema.ErrFunctionError))
	assert.Equal(t, "b", err.Step)
	assert.Equal(t, "n1", err.Node)
	assert.Equal(t, "b failed", err.Message)
	assert.Equal(t, map[string]any{"a": "A"}, got)
	assert.Equal(t, 1, f.Calls("b"), "FUNCTION_ERROR is not retried")
	assert.Equal(t, 0, f.Calls("c"), "a step after the failure never starts")
}

func TestRunFailureCancelsInFlight(t *testing.T) {
	// blocker runs until its context is cancelled; bad fails once blocker
	// is running; after-* wait on one of them and must never start.
	p := mustPlan(t, `{"cmds": [
		{"name": "blocker",       "fun": "block"},
		{"name": "bad",           "fun": "bad"},
		{"name": "after-blocker", "fun": "echo", "args": ["blocker"]},
		{"name": "after-bad",     "fun": "echo", "args": ["bad"]},
		{"name": "after-both",    "fun": "echos", "args": ["after-blocker", "after-bad"]}]}`)
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	f := newFuncs(map[string]fn{
		"block": func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
			close(started)
			select {
			case <-ctx.Done():
				cancelled <- ctx.Err()
				return nil, ctx.Err()
			case <-time.After(wait):
				return nil, errors.New("blocker was never cancelled")
			}
		},
		"bad": func(_ context.Context, _ string, _ *planner.Call) (any, error) {
			select {
			case <-started:
			case <-time.After(wait):
			}
			return nil, schema.Errorf(schema.CodeFunctionError, "boom")
		},
	})
	ev := &testwait.Events{}
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Observer: ev}
	got, err := runOf(context.Background(), r, p)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeFunctionError, err.Code, "the first failure wins: %v", err)
	assert.Equal(t, "bad", err.Step)
	assert.Empty(t, got)

	// Run returned only after blocker returned, so it saw the cancellation.
	select {
	case cerr := <-cancelled:
		assert.ErrorIs(t, cerr, context.Canceled)
	default:
		t.Fatal("blocker's context was not cancelled before Run returned")
	}
	assert.Equal(t, 2, f.Total(), "only blocker and bad ran")
	assert.Equal(t, 0, f.Calls("after-blocker"))
	assert.Equal(t, 0, f.Calls("after-bad"))
	assert.Equal(t, 0, f.Calls("after-both"))

	evs := ev.All()
	require.Len(t, evs, 2)
	for _, e := range evs {
		require.NotNil(t, e.Err)
		switch e.Step {
		case "blocker":
			assert.Equal(t, schema.CodeCancelled, e.Err.Code)
		case "bad":
			assert.Equal(t, schema.CodeFunctionError, e.Err.Code)
		default:
			t.Errorf("unexpected event for %s", e.Step)
		}
	}
}

func TestRunDataflowParallelism(t *testing.T) {
	// a -> b -> c does not depend on slow, so it completes while slow is
	// still blocked; join waits for both.
	p := mustPlan(t, `{"cmds": [
		{"name": "slow", "fun": "slow"},
		{"name": "a",    "fun": "echo",  "args": ["A"]},
		{"name": "b",    "fun": "echo",  "args": ["a"]},
		{"name": "c",    "fun": "echo",  "args": ["b"]},
		{"name": "join", "fun": "echos", "args": ["slow", "c"]}]}`)
	release := make(chan struct{})
	cDone := make(chan struct{})
	var slowDone atomic.Bool
	f := newFuncs(map[string]fn{
		"slow": func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
			select {
			case <-release:
				slowDone.Store(true)
				return "S", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	obs := planner.ObserverFunc(func(ev planner.StepEvent) {
		if ev.Step == "c" {
			assert.False(t, slowDone.Load(), "c finished after slow was released")
			close(cDone)
		}
	})
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Observer: obs}
	out := runAsync(context.Background(), r, p)

	testwait.Recv(t, cDone, "c to finish while slow is blocked")
	assert.Equal(t, 0, f.Calls("join"), "join waits for slow")
	close(release)

	res := testwait.Recv(t, out, "Run")
	require.Nil(t, res.err)
	assert.Equal(t, map[string]any{"join": []any{"S", "A"}}, res.results)
}

func TestRunWideFanOut(t *testing.T) {
	// Twenty independent steps all start before any finishes.
	const n = 20
	cmds := ""
	args := ""
	for i := range n {
		cmds += fmt.Sprintf(`{"name": "s%d", "fun": "gate", "args": [%d]},`, i, i)
		if i > 0 {
			args += ","
		}
		args += fmt.Sprintf(`"s%d"`, i)
	}
	p := mustPlan(t, `{"cmds": [`+cmds+`{"name": "sum", "fun": "echos", "args": [`+args+`]}]}`)
	var running atomic.Int32
	all := make(chan struct{})
	f := newFuncs(map[string]fn{
		"gate": func(ctx context.Context, _ string, c *planner.Call) (any, error) {
			if running.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
				return c.Args[0], nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	got, err := runOf(ctx, r, p)
	require.Nil(t, err, "the steps did not all run at once")
	want := make([]any, n)
	for i := range want {
		want[i] = int64(i)
	}
	assert.Equal(t, map[string]any{"sum": want}, got)
}

// blockUntilDone is a function that returns only when its context is done.
func blockUntilDone(started chan<- struct{}) fn {
	return func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
		if started != nil {
			close(started)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

func TestRunTimeout(t *testing.T) {
	p := mustPlan(t, `{"cmds": [
		{"name": "a",    "fun": "echo", "args": ["A"]},
		{"name": "hang", "fun": "hang", "args": ["a"]},
		{"name": "next", "fun": "echo", "args": ["hang"]}]}`)
	f := newFuncs(map[string]fn{"hang": blockUntilDone(nil)})
	r := &planner.Runner{Router: newRouter("n1", "n2"), Executor: f}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	got, err := runOf(ctx, r, p)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeTimeout, err.Code)
	assert.Equal(t, "hang", err.Step)
	assert.Equal(t, "n1", err.Node)
	assert.Equal(t, map[string]any{"a": "A"}, got)
	assert.Equal(t, 1, f.Calls("hang"), "a step that timed out is not retried")
	assert.Equal(t, 0, f.Calls("next"))
}

func TestRunTimeoutBeforeStart(t *testing.T) {
	p := mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo"}]}`)
	f := newFuncs(nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := runOf(ctx, (&planner.Runner{Router: newRouter("n1"), Executor: f}), p)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeTimeout, err.Code)
	assert.Equal(t, "a", err.Step)
	assert.Equal(t, 0, f.Total())
}

func TestRunCallerCancel(t *testing.T) {
	p := mustPlan(t, `{"cmds": [
		{"name": "hang",  "fun": "hang"},
		{"name": "other", "fun": "hang2"}]}`)
	started := make(chan struct{})
	f := newFuncs(map[string]fn{"hang": blockUntilDone(started), "hang2": blockUntilDone(nil)})
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := runAsync(ctx, r, p)
	testwait.Recv(t, started, "hang to start")
	cancel()
	res := testwait.Recv(t, out, "Run")
	require.NotNil(t, res.err)
	assert.Equal(t, schema.CodeCancelled, res.err.Code)
	assert.Contains(t, []string{"hang", "other"}, res.err.Step)
	assert.Empty(t, res.results)
}

func TestRunExecutorContextErrors(t *testing.T) {
	// An executor that reports a context error of its own (a wrapped one)
	// gets TIMEOUT or CANCELLED, not INTERNAL.
	for _, tc := range []struct {
		err  error
		code schema.Code
	}{
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), schema.CodeTimeout},
		{fmt.Errorf("waiting: %w", context.Canceled), schema.CodeCancelled},
		{errors.New("plain"), schema.CodeInternal},
	} {
		f := newFuncs(map[string]fn{"x": func(context.Context, string, *planner.Call) (any, error) { return nil, tc.err }})
		_, err := runOf(context.Background(), (&planner.Runner{Router: newRouter("n1", "n2"), Executor: f}),
			mustPlan(t, `{"cmds": [{"name": "s", "fun": "x"}]}`))
		require.NotNil(t, err, tc.err)
		assert.Equal(t, tc.code, err.Code, tc.err)
		assert.Equal(t, "s", err.Step)
		assert.Equal(t, 1, f.Total(), tc.err)
	}
}

// failOn returns an executor function that fails with code on the given
// nodes and returns the node's name elsewhere.
func failOn(code schema.Code, nodes ...string) fn {
	return func(_ context.Context, node string, _ *planner.Call) (any, error) {
		for _, n := range nodes {
			if n == node {
				return nil, schema.Errorf(code, "node %s cannot", node)
			}
		}
		return "ran on " + node, nil
	}
}

func TestRunRetriesOnAnotherNode(t *testing.T) {
	for _, code := range []schema.Code{schema.CodeNodeUnavailable, schema.CodeShuttingDown, schema.CodeOverloaded} {
		t.Run(string(code), func(t *testing.T) {
			f := newFuncs(map[string]fn{"x": failOn(code, "n1")})
			rt := newRouter("n1", "n2", "n3")
			ev := &testwait.Events{}
			r := &planner.Runner{Router: rt, Executor: f, Observer: ev}
			got, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "x", "locs": ["gpu"]}]}`))
			require.Nil(t, err)
			assert.Equal(t, map[string]any{"s": "ran on n2"}, got)
			assert.Equal(t, []string{"n1", "n2"}, f.Nodes("s"))
			assert.Equal(t, []route{
				{Fun: "x", Locs: []string{"gpu"}, Exclude: nil},
				{Fun: "x", Locs: []string{"gpu"}, Exclude: []string{"n1"}},
			}, rt.Calls())
			evs := ev.All()
			require.Len(t, evs, 1)
			assert.Equal(t, "n2", evs[0].Node)
			assert.Equal(t, 2, evs[0].Attempts)
			assert.Nil(t, evs[0].Err)
		})
	}
}

func TestRunRetriesAtMostTwice(t *testing.T) {
	f := newFuncs(map[string]fn{"x": failOn(schema.CodeNodeUnavailable, "n1", "n2", "n3", "n4", "n5")})
	rt := newRouter("n1", "n2", "n3", "n4", "n5")
	ev := &testwait.Events{}
	r := &planner.Runner{Router: rt, Executor: f, Observer: ev}
	got, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "x"}]}`))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeNodeUnavailable, err.Code)
	assert.Equal(t, "s", err.Step)
	assert.Equal(t, "n3", err.Node)
	assert.Empty(t, got)
	assert.Equal(t, []string{"n1", "n2", "n3"}, f.Nodes("s"))
	calls := rt.Calls()
	require.Len(t, calls, 3)
	assert.Equal(t, []string{"n1", "n2"}, calls[2].Exclude)
	evs := ev.All()
	require.Len(t, evs, 1)
	assert.Equal(t, 3, evs[0].Attempts)
	assert.Equal(t, "n3", evs[0].Node)

	// Retries.Max bounds the re-routes.
	f = newFuncs(map[string]fn{"x": failOn(schema.CodeOverloaded, "n1", "n2", "n3")})
	r = &planner.Runner{Router: newRouter("n1", "n2", "n3"), Executor: f, Retries: planner.Retries{Max: 1}}
	_, err = runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "x"}]}`))
	require.NotNil(t, err)
	assert.Equal(t, []string{"n1", "n2"}, f.Nodes("s"))
}

func TestRunRetryRunsOutOfNodes(t *testing.T) {
	f := newFuncs(map[string]fn{"x": failOn(schema.CodeNodeUnavailable, "n1")})
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	_, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "x", "locs": ["l"]}]}`))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeNodeUnavailable, err.Code)
	assert.Equal(t, "s", err.Step)
	assert.Equal(t, "n1", err.Node)
	d := details(t, err)
	assert.Equal(t, "x", d["fun"])
	assert.Equal(t, []any{"l"}, d["locs"])
	assert.Equal(t, []any{"n1"}, d["tried"])
}

// A step that every eligible node refused for load fails OVERLOADED with
// the wait to suggest: the nodes are busy, not gone. One refusal of
// another kind among them makes it NODE_UNAVAILABLE.
func TestRunEveryNodeBusy(t *testing.T) {
	plan := `{"cmds": [{"name": "s", "fun": "x", "locs": ["l"]}]}`
	for _, tc := range []struct {
		name  string
		nodes []string
		exec  fn
		retry time.Duration
		code  schema.Code
		tried []any
		wait  any // details.retry_after_ms; nil when absent
	}{
		{"one node, busy", []string{"n1"}, failOn(schema.CodeOverloaded, "n1"), 0,
			schema.CodeOverloaded, []any{"n1"}, planner.DefaultOverloadRetryAfter.Milliseconds()},
		{"two nodes, busy", []string{"n1", "n2"}, failOn(schema.CodeOverloaded, "n1", "n2"), 250 * time.Millisecond,
			schema.CodeOverloaded, []any{"n1", "n2"}, int64(250)},
		{"retries spent, all busy", []string{"n1", "n2", "n3", "n4"}, failOn(schema.CodeOverloaded, "n1", "n2", "n3", "n4"), 0,
			schema.CodeOverloaded, []any{"n1", "n2", "n3"}, planner.DefaultOverloadRetryAfter.Milliseconds()},
		{"one busy, one gone", []string{"n1", "n2"}, func(_ context.Context, node string, _ *planner.Call) (any, error) {
			if node == "n1" {
				return nil, schema.Errorf(schema.CodeOverloaded, "n1 is busy")
			}
			return nil, &planner.AttemptError{Fact: planner.NoResponders, Err: schema.Errorf(schema.CodeNodeUnavailable, "n2 is gone")}
		}, 0, schema.CodeNodeUnavailable, []any{"n1", "n2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &planner.Runner{Router: newRouter(tc.nodes...), Executor: newFuncs(map[string]fn{"x": tc.exec}), Retries: planner.Retries{OverloadAfter: tc.retry}}
			_, err := runOf(context.Background(), r, mustPlan(t, plan))
			require.NotNil(t, err)
			assert.Equal(t, tc.code, err.Code)
			assert.Equal(t, "s", err.Step)
			d := details(t, err)
			assert.Equal(t, tc.tried, d["tried"])
			assert.Equal(t, "x", d["fun"])
			assert.Equal(t, tc.wait, d["retry_after_ms"])
		})
	}
}

func TestRunFinalErrorIsNotRetried(t *testing.T) {
	f := newFuncs(map[string]fn{"x": func(_ context.Context, node string, _ *planner.Call) (any, error) {
		return nil, &planner.AttemptError{Fact: planner.LostWhileRunning,
			Err: schema.Errorf(schema.CodeNodeUnavailable, "lost %s mid-step", node)}
	}})
	r := &planner.Runner{Router: newRouter("n1", "n2"), Executor: f}
	_, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "x"}]}`))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeNodeUnavailable, err.Code)
	assert.Equal(t, "lost n1 mid-step", err.Message)
	assert.Equal(t, "s", err.Step)
	assert.Equal(t, []string{"n1"}, f.Nodes("s"))
}

func TestRunNotRetried(t *testing.T) {
	for _, code := range []schema.Code{
		schema.CodeFunctionError, schema.CodeFunctionPanic, schema.CodeInvalidArgument,
		schema.CodeTimeout, schema.CodePermissionDenied, schema.CodeInternal, schema.CodeNoRoute,
	} {
		f := newFuncs(map[string]fn{"x": failOn(code, "n1")})
		rt := newRouter("n1", "n2")
		_, err := runOf(context.Background(), (&planner.Runner{Router: rt, Executor: f}),
			mustPlan(t, `{"cmds": [{"name": "s", "fun": "x"}]}`))
		require.NotNil(t, err, code)
		assert.Equal(t, code, err.Code)
		assert.Equal(t, "n1", err.Node, code)
		assert.Equal(t, []string{"n1"}, f.Nodes("s"), code)
		assert.Len(t, rt.Calls(), 1, code)
	}
}

func TestRunNoRoute(t *testing.T) {
	for _, tc := range []struct {
		js   string
		locs []any
	}{
		{`{"cmds": [{"name": "s", "fun": "predict", "locs": ["gpu", "model-a"]}]}`, []any{"gpu", "model-a"}},
		{`{"cmds": [{"name": "s", "fun": "predict"}]}`, []any{}},
	} {
		f := newFuncs(nil)
		rt := newRouter()
		got, err := runOf(context.Background(), (&planner.Runner{Router: rt, Executor: f}), mustPlan(t, tc.js))
		require.NotNil(t, err)
		assert.True(t, errors.Is(err, schema.ErrNoRoute))
		assert.Equal(t, "s", err.Step)
		assert.Empty(t, err.Node)
		assert.Equal(t, map[string]any{"fun": "predict", "locs": tc.locs}, err.Details)
		assert.Contains(t, err.Message, "predict")
		assert.Empty(t, got)
		assert.Equal(t, 0, f.Total())
	}
}

func TestRunObserverEvents(t *testing.T) {
	p := mustPlan(t, `{"id": "req-1", "cmds": [
		{"name": "a", "fun": "echo", "args": [1]},
		{"name": "b", "fun": "echo", "args": ["a"]},
		{"name": "c", "fun": "x",    "args": ["a"]},
		{"name": "d", "fun": "echos", "args": ["b", "c"]}]}`)
	f := newFuncs(map[string]fn{"x": failOn(schema.CodeShuttingDown, "n1")})
	ev := &testwait.Events{}
	r := &planner.Runner{Router: newRouter("n1", "n2"), Executor: f, Observer: ev}
	_, err := runOf(context.Background(), r, p)
	require.Nil(t, err)

	evs := ev.All()
	require.Len(t, evs, 4)
	seen := map[string]planner.StepEvent{}
	for _, e := range evs {
		_, dup := seen[e.Step]
		require.False(t, dup, "two events for %s", e.Step)
		seen[e.Step] = e
		assert.Equal(t, "req-1", e.RequestID)
		assert.Nil(t, e.Err)
		assert.False(t, e.Start.IsZero())
		assert.GreaterOrEqual(t, e.Duration, time.Duration(0))
	}
	for step, want := range map[string]struct {
		fun, node string
		attempts  int
	}{
		"a": {"echo", "n1", 1}, "b": {"echo", "n1", 1}, "c": {"x", "n2", 2}, "d": {"echos", "n1", 1},
	} {
		e := seen[step]
		assert.Equal(t, want.fun, e.Fun, step)
		assert.Equal(t, want.node, e.Node, step)
		assert.Equal(t, want.attempts, e.Attempts, step)
	}
}

func TestRunObserverFailureEvents(t *testing.T) {
	ev := &testwait.Events{}
	r := &planner.Runner{Router: newRouter(), Executor: newFuncs(nil), Observer: ev}
	_, err := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "s", "fun": "echo"}]}`))
	require.NotNil(t, err)
	evs := ev.All()
	require.Len(t, evs, 1)
	assert.Equal(t, "s", evs[0].Step)
	assert.Empty(t, evs[0].Node)
	assert.Equal(t, 0, evs[0].Attempts)
	require.NotNil(t, evs[0].Err)
	assert.Equal(t, schema.CodeNoRoute, evs[0].Err.Code)
}

func TestRunnerCall(t *testing.T) {
	f := newFuncs(map[string]fn{"x": failOn(schema.CodeNodeUnavailable, "n1")})
	rt := newRouter("n1", "n2")
	r := &planner.Runner{Router: rt, Executor: f}
	call := &planner.Call{RequestID: "rid", Step: "x", Fun: "x", Locs: []string{"l"}, Args: []any{int64(1)}}
	assert.Equal(t, "rid/x", call.ID())

	v, err := callOf(context.Background(), r, call)
	require.Nil(t, err)
	assert.Equal(t, "ran on n2", v)
	assert.Equal(t, []string{"n1", "n2"}, f.Nodes("x"))
	assert.Equal(t, []string{"n1"}, rt.Calls()[1].Exclude)

	v, err = callOf(context.Background(), (&planner.Runner{Router: newRouter(), Executor: f}), call)
	assert.Nil(t, v)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeNoRoute, err.Code)
	assert.Equal(t, "x", err.Step)

	f = newFuncs(nil)
	v, err = callOf(context.Background(), (&planner.Runner{Router: newRouter("n1"), Executor: f}),
		&planner.Call{RequestID: "rid", Step: "e", Fun: "echos", Args: []any{"a", int64(2)}})
	require.Nil(t, err)
	assert.Equal(t, []any{"a", int64(2)}, v)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = callOf(ctx, (&planner.Runner{Router: newRouter("n1"), Executor: f}), call)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeCancelled, err.Code)
	assert.Equal(t, "x", err.Step)
}

func TestRunConcurrentRuns(t *testing.T) {
	// One Runner serves many Run calls at once.
	p := mustPlan(t, readmeRequest)
	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}
	const n = 16
	outs := make([]<-chan runResult, n)
	for i := range outs {
		outs[i] = runAsync(context.Background(), r, p)
	}
	for _, ch := range outs {
		res := testwait.Recv(t, ch, "Run")
		require.Nil(t, res.err)
		assert.Equal(t, map[string]any{
			"|second": "hi there!",
			"|third":  []any{"hi there!", "AND ME TOO"},
		}, res.results)
	}
}

// strSize measures string results by their length, anything else as 1.
func strSize(v any) int64 {
	if s, ok := v.(string); ok {
		return int64(len(s))
	}
	return 1
}

// budget is a planner.Budget that records what is held.
type budget struct {
	mu        sync.Mutex
	cap, held int64
}

func (b *budget) TryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held+n > b.cap {
		return false
	}
	b.held += n
	return true
}

func (b *budget) Release(n int64) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
}

// A request holds its results within MaxResultBytes: results that no step
// will read again and that are not returned are released as soon as their
// readers succeed, so a long chain of large results fits, while a request
// that must hold more at once fails with PAYLOAD_TOO_LARGE naming the
// limit. The node's shared Memory gets every byte back.
func TestRunResultMemory(t *testing.T) {
	big := strings.Repeat("x", 600)
	f := newFuncs(map[string]fn{"big": func(context.Context, string, *planner.Call) (any, error) { return big, nil }})
	mem := &budget{cap: 10_000}
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Size: strSize, MaxResultBytes: 1000, Memory: mem}

	// A chain: each step's input is released when it succeeds.
	chain := `{"cmds": [{"name": "s0", "fun": "big"}`
	for i := 1; i < 10; i++ {
		chain += fmt.Sprintf(`, {"name": "s%d", "fun": "echo", "args": ["s%d"]}`, i, i-1)
	}
	got, err := runOf(context.Background(), r, mustPlan(t, chain+`]}`))
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"s9": big}, got)
	assert.Zero(t, mem.held)

	// Two results read by one last step must be held at once: too much.
	_, err = runOf(context.Background(), r, mustPlan(t, `{"cmds": [
		{"name": "a", "fun": "big"}, {"name": "b", "fun": "big"}, {"name": "j", "fun": "echos", "args": ["a", "b"]}]}`))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodePayloadTooLarge, err.Code)
	assert.Equal(t, "max_result_bytes", err.Details.(map[string]any)["limit"])
	assert.Zero(t, mem.held)

	// The shared memory is full: OVERLOADED.
	mem.cap = 100
	_, err = runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "a", "fun": "big"}]}`))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeOverloaded, err.Code)
	assert.Zero(t, mem.held)

	// results "all" keeps every result.
	mem.cap = 10_000
	r.MaxResultBytes = 10_000
	got, err = runOf(context.Background(), r, mustPlan(t, `{"results": "all", "cmds": [
		{"name": "a", "fun": "big"}, {"name": "b", "fun": "echo", "args": ["a"]}]}`))
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"a": big, "b": big}, got)
}

// Partial results keep the inputs of the step that failed, and leave out
// the results already consumed by steps that succeeded.
func TestRunPartialResultsAfterRelease(t *testing.T) {
	p := mustPlan(t, `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["A"]},
		{"name": "b", "fun": "echo", "args": ["a"]},
		{"name": "c", "fun": "fail", "args": ["b"]}]}`)
	got, err := runOf(context.Background(), (&planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}), p)
	require.NotNil(t, err)
	assert.Equal(t, "c", err.Step)
	assert.Equal(t, map[string]any{"b": "A"}, got)
}

// Whether a step may go to another node is decided in one place, from what
// the Executor saw of the attempt.
func TestRetryable(t *testing.T) {
	err := func(c schema.Code) *schema.Error { return schema.Errorf(c, "x") }
	att := func(f planner.Fact, c schema.Code, idem bool) error {
		return &planner.AttemptError{Fact: f, Err: err(c), Idempotent: idem}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no responders: it did not run", att(planner.NoResponders, schema.CodeNodeUnavailable, false), true},
		{"not sent", att(planner.NotSent, schema.CodeNodeUnavailable, false), true},
		{"lost before it took the step", att(planner.LostBeforeRun, schema.CodeNodeUnavailable, false), true},
		{"lost while running, not idempotent", att(planner.LostWhileRunning, schema.CodeNodeUnavailable, false), false},
		{"lost while running, idempotent", att(planner.LostWhileRunning, schema.CodeNodeUnavailable, true), true},
		{"stopped while running, not idempotent", att(planner.StoppedWhileRunning, schema.CodeNodeUnavailable, false), false},
		{"stopped while running, idempotent", att(planner.StoppedWhileRunning, schema.CodeNodeUnavailable, true), true},
		{"attempt deadline, idempotent", att(planner.AttemptDeadline, schema.CodeTimeout, true), true},
		{"attempt deadline, not idempotent", att(planner.AttemptDeadline, schema.CodeTimeout, false), false},
		{"answered SHUTTING_DOWN", err(schema.CodeShuttingDown), true},
		{"answered OVERLOADED", err(schema.CodeOverloaded), true},
		{"answered NODE_UNAVAILABLE", err(schema.CodeNodeUnavailable), true},
		{"answered TIMEOUT", err(schema.CodeTimeout), false},
		{"answered FUNCTION_ERROR", err(schema.CodeFunctionError), false},
		{"answered NO_ROUTE", err(schema.CodeNoRoute), false},
		{"wrapped answer", fmt.Errorf("context: %w", err(schema.CodeOverloaded)), true},
		{"not an error object", errors.New("boom"), false},
	} {
		assert.Equal(t, tc.want, planner.Retryable(tc.err), tc.name)
	}
}

func TestRunLocalAndRemoteExecutors(t *testing.T) {
	// Steps routed to Self go to Local, the others to Executor; a traced
	// request's entries carry the Timing each returned with its result.
	timed := func(where string, queue, run time.Duration, seen *[]string) planner.Executor {
		var mu sync.Mutex
		return planner.ExecutorFunc(func(_ context.Context, node string, c *planner.Call) (planner.Result, error) {
			mu.Lock()
			*seen = append(*seen, c.Step)
			mu.Unlock()
			res := planner.Result{Value: where + " on " + node}
			if c.Traced() {
				res.Timing = planner.Timing{Queue: queue, Run: run}
			}
			return res, nil
		})
	}
	var local, remote []string
	r := &planner.Runner{Router: planner.RouterFunc(func(_ context.Context, fun string, _, _ []string) (string, bool) {
		if fun == "here" {
			return "self", true
		}
		return "other", true
	}), Self: "self",
		Local:    timed("local", 3*time.Millisecond, 5*time.Millisecond, &local),
		Executor: timed("remote", 7*time.Millisecond, 11*time.Millisecond, &remote)}
	p := mustPlan(t, `{"cmds": [{"name": "a", "fun": "here"}, {"name": "b", "fun": "there", "args": ["a"]}]}`)
	p.Trace, p.All = true, true
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Equal(t, map[string]any{"a": "local on self", "b": "remote on other"}, o.Results)
	assert.Equal(t, []string{"a"}, local)
	assert.Equal(t, []string{"b"}, remote)
	require.Len(t, o.Trace, 2)
	for _, e := range o.Trace {
		switch e.Step {
		case "a":
			assert.Equal(t, [2]int64{3000, 5000}, [2]int64{e.QueueUS, e.RunUS})
		case "b":
			assert.Equal(t, [2]int64{7000, 11000}, [2]int64{e.QueueUS, e.RunUS})
		}
	}

	// Untraced, the call says so; without Local, Executor runs every step.
	var all []string
	r = &planner.Runner{Router: newRouter("self"), Self: "self", Executor: timed("any", time.Second, time.Second, &all)}
	p = mustPlan(t, `{"cmds": [{"name": "a", "fun": "here"}]}`)
	res, err := runOf(context.Background(), r, p)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"a": "any on self"}, res)
	assert.Equal(t, []string{"a"}, all)
}
