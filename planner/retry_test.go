package planner_test

import (
	"context"
	"log/slog"
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

// failTimes fails its first n calls with an error of code, then returns
// the number of calls.
func failTimes(n int, code schema.Code) fn {
	var calls atomic.Int64
	return func(context.Context, string, *planner.Call) (any, error) {
		c := calls.Add(1)
		if c <= int64(n) {
			return nil, &schema.Error{Code: code, Message: "not yet", Details: map[string]any{"call": c}}
		}
		return c, nil
	}
}

// policies is a Runner.Retries.Policy with the same policy for every node and
// function.
func policies(p schema.RetryPolicy) func(node, fun string) *schema.RetryPolicy {
	return func(string, string) *schema.RetryPolicy { return &p }
}

const oneStep = `{"cmds": [{"name": "s", "fun": "x"}], "trace": true}`

func TestRetryByPolicy(t *testing.T) {
	for _, code := range []schema.Code{schema.CodeFunctionError, schema.CodeFunctionPanic, schema.CodeTimeout, schema.CodeNodeUnavailable} {
		t.Run(string(code), func(t *testing.T) {
			f := newFuncs(map[string]fn{"x": failTimes(2, code)})
			ev := &testwait.Events{}
			r := &planner.Runner{Router: newRouter("n1"), Executor: f, Observer: ev,
				Retries: planner.Retries{Policy: policies(schema.RetryPolicy{Attempts: 3, InitialBackoffMS: 1})}}
			o := r.Execute(context.Background(), mustPlan(t, oneStep))
			require.Nil(t, o.Err)
			assert.Equal(t, map[string]any{"s": int64(3)}, o.Results)
			require.Len(t, o.Trace, 3)
			for i, e := range o.Trace {
				assert.Equal(t, int64(i+1), e.Attempt, "attempt numbers go on across retries")
			}
			assert.Equal(t, schema.Outcome(&schema.Error{Code: code}), o.Trace[0].Code)
			assert.Equal(t, schema.OutcomeOK, o.Trace[2].Code)
			evs := ev.All()
			require.Len(t, evs, 1)
			assert.Equal(t, 3, evs[0].Attempts)
		})
	}
}

func TestRetryByPolicyExhausted(t *testing.T) {
	f := newFuncs(map[string]fn{"x": failTimes(10, schema.CodeFunctionError)})
	ev := &testwait.Events{}
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Observer: ev,
		Retries: planner.Retries{Policy: policies(schema.RetryPolicy{Attempts: 4})}}
	o := r.Execute(context.Background(), mustPlan(t, oneStep))
	require.NotNil(t, o.Err)
	assert.Equal(t, schema.CodeFunctionError, o.Err.Code)
	assert.Equal(t, "s", o.Err.Step)
	assert.Equal(t, "n1", o.Err.Node)
	assert.Equal(t, map[string]any{"call": int64(4), "attempts": int64(4)}, o.Err.Details, "the last error, with attempts")
	assert.Equal(t, 4, f.Calls("s"))
	assert.Len(t, o.Trace, 4)
	assert.Equal(t, 4, ev.All()[0].Attempts)
}

// Codes a policy does not cover, and a TIMEOUT of the request's own
// budget, end the step at once, as without a policy.
func TestRetryByPolicyNotRetried(t *testing.T) {
	policy := policies(schema.RetryPolicy{Attempts: 5})
	for _, code := range []schema.Code{schema.CodeInvalidArgument, schema.CodeNoRoute, schema.CodeInternal, schema.CodeCancelled} {
		f := newFuncs(map[string]fn{"x": failTimes(10, code)})
		r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policy}}
		_, err := runOf(context.Background(), r, mustPlan(t, oneStep))
		require.NotNil(t, err, code)
		assert.Equal(t, code, err.Code)
		assert.Equal(t, map[string]any{"call": int64(1)}, err.Details, "%s: no details.attempts", code)
		assert.Equal(t, 1, f.Calls("s"), code)
	}

	// The request's budget ran out: its TIMEOUT is not retried.
	f := newFuncs(map[string]fn{"x": func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policy}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := runOf(ctx, r, mustPlan(t, oneStep))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeTimeout, err.Code)
	assert.Equal(t, 1, f.Calls("s"))
}

// Without a policy (no Runner.Retries.Policy, or none for the function) a failed
// step fails as before: one attempt, its error as it came.
func TestRetryNoPolicy(t *testing.T) {
	shared := &schema.Error{Code: schema.CodeFunctionError, Message: "no", Details: map[string]any{"k": "v"}}
	x := func(context.Context, string, *planner.Call) (any, error) { return nil, shared }
	for _, policy := range []func(node, fun string) *schema.RetryPolicy{
		nil,
		func(string, string) *schema.RetryPolicy { return nil },
		policies(schema.RetryPolicy{Attempts: 1, InitialBackoffMS: 10}),
	} {
		f := newFuncs(map[string]fn{"x": x})
		r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policy}}
		o := r.Execute(context.Background(), mustPlan(t, oneStep))
		require.NotNil(t, o.Err)
		assert.Equal(t, map[string]any{"k": "v"}, o.Err.Details)
		assert.Len(t, o.Trace, 1)
		assert.Equal(t, 1, f.Calls("s"))
	}
	assert.Equal(t, map[string]any{"k": "v"}, shared.Details, "the function's error is not changed")
}

// details.attempts goes on a copy: the function's error, which another
// request may share, keeps its details; details that are not a map move
// to details.details.
func TestRetryDetailsCopied(t *testing.T) {
	shared := &schema.Error{Code: schema.CodeFunctionError, Message: "no", Details: map[string]any{"k": "v"}}
	odd := &schema.Error{Code: schema.CodeFunctionError, Message: "no", Details: []any{"a"}}
	for _, tc := range []struct {
		err  *schema.Error
		want any
	}{
		{shared, map[string]any{"k": "v", "attempts": int64(2)}},
		{odd, map[string]any{"details": []any{"a"}, "attempts": int64(2)}},
	} {
		f := newFuncs(map[string]fn{"x": func(context.Context, string, *planner.Call) (any, error) { return nil, tc.err }})
		r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policies(schema.RetryPolicy{Attempts: 2})}}
		_, err := runOf(context.Background(), r, mustPlan(t, oneStep))
		require.NotNil(t, err)
		assert.Equal(t, tc.want, err.Details)
	}
	assert.Equal(t, map[string]any{"k": "v"}, shared.Details)
	assert.Equal(t, []any{"a"}, odd.Details)
}

// The policy is the one of the node that ran the failed attempt.
func TestRetryPolicyOfTheNode(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	policy := func(node, fun string) *schema.RetryPolicy {
		mu.Lock()
		asked = append(asked, node+"/"+fun)
		mu.Unlock()
		if node == "n2" {
			return &schema.RetryPolicy{Attempts: 3}
		}
		return nil
	}
	// n1 is gone before running (re-routed to n2), n2 fails twice.
	var n2 atomic.Int64
	f := newFuncs(map[string]fn{"x": func(_ context.Context, node string, _ *planner.Call) (any, error) {
		if node == "n1" {
			return nil, schema.Errorf(schema.CodeShuttingDown, "draining")
		}
		if n2.Add(1) < 3 {
			return nil, schema.Errorf(schema.CodeFunctionError, "no")
		}
		return "ok", nil
	}})
	r := &planner.Runner{Router: newRouter("n1", "n2"), Executor: f, Retries: planner.Retries{Policy: policy}}
	o := r.Execute(context.Background(), mustPlan(t, oneStep))
	// Attempts count the re-routes too: after n1 and n2 (2 of 3) one
	// retry, which is re-routed from n1 to n2 again (4).
	require.NotNil(t, o.Err)
	assert.Equal(t, schema.CodeFunctionError, o.Err.Code)
	assert.Equal(t, map[string]any{"attempts": int64(4)}, o.Err.Details)
	assert.Equal(t, []string{"n1", "n2", "n1", "n2"}, f.Nodes("s"), "each retry routes anew, skipping what refused it")
	require.Len(t, o.Trace, 4)
	assert.Equal(t, int64(4), o.Trace[3].Attempt)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"n2/x", "n2/x"}, asked)
}

// A retry never waits past the request's deadline: with less budget left
// than the backoff, the step fails at once with its last error.
func TestRetryBackoffPastDeadline(t *testing.T) {
	f := newFuncs(map[string]fn{"x": failTimes(10, schema.CodeFunctionError)})
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policies(schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 10_000})}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := runOf(ctx, r, mustPlan(t, oneStep))
	assert.Less(t, time.Since(start), time.Second)
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeFunctionError, err.Code)
	assert.Equal(t, int64(1), err.Details.(map[string]any)["attempts"])
	assert.Equal(t, 1, f.Calls("s"))
}

// A cancel during a backoff ends the step at once, CANCELLED.
func TestRetryBackoffCancelled(t *testing.T) {
	f := newFuncs(map[string]fn{"x": func(context.Context, string, *planner.Call) (any, error) {
		return nil, schema.Errorf(schema.CodeFunctionError, "no")
	}})
	// The runner logs a retry just before its backoff.
	backoff := make(chan struct{}, 1)
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		if strings.Contains(string(p), "step retried by policy") {
			backoff <- struct{}{}
		}
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Logger: logger,
		Retries: planner.Retries{Policy: policies(schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 60_000})}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *schema.Error, 1)
	go func() {
		_, err := runOf(ctx, r, mustPlan(t, oneStep))
		done <- err
	}()
	testwait.Recv(t, backoff, "the backoff")
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		require.NotNil(t, err)
		assert.Equal(t, schema.CodeCancelled, err.Code)
		assert.Less(t, time.Since(start), time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("the backoff did not end on cancel")
	}
	assert.Equal(t, 1, f.Calls("s"))
}

// In a run of several steps, another step's failure ends a step's
// backoff (the run cancels its steps in flight).
func TestRetryBackoffEndsWhenRunFails(t *testing.T) {
	backoff := make(chan struct{}, 1)
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		if strings.Contains(string(p), "step retried by policy") {
			backoff <- struct{}{}
		}
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFuncs(map[string]fn{
		"x": failTimes(10, schema.CodeFunctionError),
		"y": func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
			select { // fail once x waits for its retry
			case <-backoff:
			case <-ctx.Done():
			}
			return nil, schema.Errorf(schema.CodeInvalidArgument, "bad")
		},
	})
	policy := func(_, fun string) *schema.RetryPolicy {
		if fun == "x" {
			return &schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 30_000}
		}
		return nil
	}
	r := &planner.Runner{Router: newRouter("n1"), Executor: f, Retries: planner.Retries{Policy: policy}, Logger: logger}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := runOf(ctx, r, mustPlan(t, `{"cmds": [{"name": "a", "fun": "x"}, {"name": "b", "fun": "y"}]}`))
	require.NotNil(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "a's 30 s backoff ended with the run")
	assert.Equal(t, schema.CodeInvalidArgument, err.Code)
	assert.Equal(t, 1, f.Calls("a"))
}

// writerFunc adapts a function to io.Writer.
type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) {
	w(p)
	return len(p), nil
}
