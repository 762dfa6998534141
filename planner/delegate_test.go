package planner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// remote is a Delegator whose node "r" plans sub-requests with a Runner of
// its own, as a node does: steps with loc "r" are pinned to it.
type remote struct {
	mu      sync.Mutex
	funcs   *funcs
	sent    []*schema.Request
	refuse  bool // answer ErrNotDelegated
	failure error
	tamper  func(*schema.Response) // changes each response before it is returned
}

func (d *remote) Pinned(_ string, locs []string) (string, bool) {
	if slices.Contains(locs, "r") {
		return "r", true
	}
	return "", false
}

func (d *remote) Delegate(ctx context.Context, node string, req *schema.Request) (*schema.Response, error) {
	d.mu.Lock()
	d.sent = append(d.sent, req)
	d.mu.Unlock()
	if d.refuse {
		return nil, fmt.Errorf("%w: full", planner.ErrNotDelegated)
	}
	if d.failure != nil {
		return nil, d.failure
	}
	p, err := planner.New(req, planner.Limits{})
	if err != nil {
		return &schema.Response{ID: req.ID, Error: schema.AsError(err)}, nil
	}
	p.Trace = req.Trace
	o := (&planner.Runner{Router: newRouter(node), Executor: d.funcs, Self: node}).Execute(ctx, p)
	resp := &schema.Response{ID: req.ID, Results: o.Results, Error: o.Err, Trace: o.Trace}
	if d.tamper != nil {
		d.tamper(resp)
	}
	return resp, nil
}

func (d *remote) requests() []*schema.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sent)
}

const delegatedChain = `{"id": "c1", "cmds": [
	{"name": "a", "fun": "echo", "args": ["start"]},
	{"name": "b", "fun": "echos", "args": ["a", "|b-literal"], "locs": ["r"]},
	{"name": "c", "fun": "echo", "args": [{"$ref": "b", "path": "/0"}], "locs": ["r"]},
	{"name": "d", "fun": "echos", "args": ["c", "a"], "locs": ["r"]},
	{"name": "e", "fun": "echo", "args": ["d"]}]}`

func TestDelegateChain(t *testing.T) {
	local, far := newFuncs(nil), newFuncs(nil)
	d := &remote{funcs: far}
	r := &planner.Runner{Router: newRouter("here"), Executor: local, Delegator: d, Self: "here"}
	p := mustPlan(t, delegatedChain)
	p.Trace = true
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	require.Equal(t, map[string]any{"e": []any{"start", "start"}}, o.Results)

	sent := d.requests()
	require.Len(t, sent, 1, "b, c and d go in one message")
	req := sent[0]
	require.Len(t, req.Cmds, 3)
	require.True(t, strings.HasPrefix(req.ID, "c1/~"))
	require.Equal(t, "", req.Results, "only the sub-graph's sink is needed")
	b, c, dd := req.Cmds[0], req.Cmds[1], req.Cmds[2]
	require.Equal(t, []any{"start", "|b-literal"}, b.Args, "a's result in place, the literal as it is")
	require.Equal(t, []any{map[string]any{"$ref": b.Name, "path": "/0"}}, c.Args)
	require.Equal(t, []any{c.Name, "start"}, dd.Args)
	require.Equal(t, []string{"r"}, b.Locs)

	require.Equal(t, 2, local.Total(), "no step of the sub-graph ran here")
	require.Equal(t, 1, local.Calls("a"))
	require.Equal(t, 1, local.Calls("e"))
	require.Equal(t, 3, far.Total())
	steps := map[string]string{}
	for _, e := range o.Trace {
		steps[e.Step] = e.Node
	}
	require.Equal(t, map[string]string{"a": "here", "b": "r", "c": "r", "d": "r", "e": "here"}, steps)
}

// With every result asked for, or a step outside the sub-graph reading an
// inner step, the sub-request returns all its results.
func TestDelegateResultsAll(t *testing.T) {
	d := &remote{funcs: newFuncs(nil)}
	r := &planner.Runner{Router: newRouter("here"), Executor: newFuncs(nil), Delegator: d, Self: "here"}
	o := r.Execute(context.Background(), mustPlan(t, `{"cmds": [
		{"name": "a", "fun": "echo", "args": [1], "locs": ["r"]},
		{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]},
		{"name": "c", "fun": "echos", "args": ["a", "b"]}]}`))
	require.Nil(t, o.Err)
	require.Equal(t, map[string]any{"c": []any{int64(1), int64(1)}}, o.Results)
	require.Equal(t, schema.ResultsAll, d.requests()[0].Results)
}

func TestDelegateFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		d     *remote
		plan  string
		sends int
	}{
		{"refused", &remote{refuse: true}, delegatedChain, 1},
		{"a result that reads as a reference", &remote{}, `{"cmds": [
			{"name": "a", "fun": "echo", "args": [{"$ref": "k"}]},
			{"name": "k", "fun": "kw", "kwargs": {"x": {"y": 1}}},
			{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]},
			{"name": "c", "fun": "echo", "args": ["b"], "locs": ["r"]}]}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.d.funcs = newFuncs(nil)
			local := newFuncs(map[string]fn{"kw": func(context.Context, string, *planner.Call) (any, error) {
				return map[string]any{"$ref": "b"}, nil // data that looks like a reference
			}})
			r := &planner.Runner{Router: newRouter("here"), Executor: local, Delegator: tc.d, Self: "here"}
			o := r.Execute(context.Background(), mustPlan(t, tc.plan))
			require.Nil(t, o.Err)
			require.Len(t, tc.d.requests(), tc.sends)
			require.Zero(t, tc.d.funcs.Total(), "nothing ran remotely")
			require.NotEmpty(t, o.Results)
		})
	}
}

func TestDelegateErrors(t *testing.T) {
	far := newFuncs(nil)
	d := &remote{funcs: far}
	r := &planner.Runner{Router: newRouter("here"), Executor: newFuncs(nil), Delegator: d, Self: "here"}
	o := r.Execute(context.Background(), mustPlan(t, `{"cmds": [
		{"name": "a", "fun": "echo", "args": [1], "locs": ["r"]},
		{"name": "b", "fun": "fail", "args": ["a"], "locs": ["r"]},
		{"name": "c", "fun": "echo", "args": ["b"], "locs": ["r"]},
		{"name": "z", "fun": "echo", "args": ["Z"]}]}`))
	require.NotNil(t, o.Err)
	require.Equal(t, schema.CodeFunctionError, o.Err.Code)
	require.Equal(t, "b", o.Err.Step, "the error names the request's own step")
	require.Equal(t, "r", o.Err.Node)
	require.Equal(t, 2, far.Total(), "c never ran")

	d.failure = schema.Errorf(schema.CodeNodeUnavailable, "wire cut")
	o = r.Execute(context.Background(), mustPlan(t, delegatedChain))
	require.NotNil(t, o.Err)
	require.Equal(t, "b", o.Err.Step)
	require.Equal(t, schema.CodeNodeUnavailable, o.Err.Code)

	// Cancelled while delegated: the sub-request sees the cancel.
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	d.failure = nil
	d.funcs = newFuncs(map[string]fn{"wait": func(ctx context.Context, _ string, _ *planner.Call) (any, error) {
		close(block)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	done := make(chan planner.Outcome, 1)
	go func() {
		done <- r.Execute(ctx, mustPlan(t, `{"cmds": [
			{"name": "a", "fun": "wait", "locs": ["r"]},
			{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]}]}`))
	}()
	<-block
	cancel()
	o = <-done
	require.NotNil(t, o.Err)
	require.Equal(t, schema.CodeCancelled, o.Err.Code)
}

// With on_error continue every step's fate is told apart: nothing is
// delegated.
func TestDelegateNotWithContinue(t *testing.T) {
	d := &remote{funcs: newFuncs(nil)}
	r := &planner.Runner{Router: newRouter("here"), Executor: newFuncs(nil), Delegator: d, Self: "here"}
	o := r.Execute(context.Background(), mustPlan(t, `{"on_error": "continue", "cmds": [
		{"name": "a", "fun": "echo", "args": [1], "locs": ["r"]},
		{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]}]}`))
	require.Nil(t, o.Err)
	require.Empty(t, d.requests())
}

// A delegate that says it succeeded but leaves out a result the rest of
// the request needs broke the contract: the request fails with INTERNAL
// naming the delegate and the step, and no step reads a null instead.
func TestDelegateWithoutResults(t *testing.T) {
	for _, tc := range []struct {
		name, plan, missing string
		tamper              func(*schema.Response)
	}{
		{"results {}", delegatedChain, "d", func(r *schema.Response) { r.Results = map[string]any{} }},
		{"results absent", delegatedChain, "d", func(r *schema.Response) { r.Results = nil }},
		{"one sink of two", `{"cmds": [
			{"name": "a", "fun": "echo", "args": [1], "locs": ["r"]},
			{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]},
			{"name": "c", "fun": "echo", "args": ["a"], "locs": ["r"]},
			{"name": "z", "fun": "echos", "args": ["b", "c"]}]}`, "c", func(r *schema.Response) {
			for name := range r.Results {
				if strings.HasSuffix(name, ".2") {
					delete(r.Results, name)
				}
			}
		}},
		{"an inner step another step reads", `{"cmds": [
			{"name": "a", "fun": "echo", "args": [1], "locs": ["r"]},
			{"name": "b", "fun": "echo", "args": ["a"], "locs": ["r"]},
			{"name": "c", "fun": "echos", "args": ["a", "b"]}]}`, "a", func(r *schema.Response) {
			for name := range r.Results {
				if strings.HasSuffix(name, ".0") {
					delete(r.Results, name)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := newFuncs(nil)
			d := &remote{funcs: newFuncs(nil), tamper: tc.tamper}
			r := &planner.Runner{Router: newRouter("here"), Executor: local, Delegator: d, Self: "here"}
			o := r.Execute(context.Background(), mustPlan(t, tc.plan))
			require.NotNil(t, o.Err, "results %v", o.Results)
			require.Equal(t, schema.CodeInternal, o.Err.Code)
			require.Equal(t, "r", o.Err.Node)
			require.Equal(t, tc.missing, o.Err.Step)
			require.Contains(t, o.Err.Message, "node r")
			require.Len(t, d.requests(), 1)
			require.Zero(t, local.Calls("echos"), "no step read the missing result")
		})
	}
}

// A delegate's trace that says it was cut makes the request's say so.
func TestDelegateTraceTruncated(t *testing.T) {
	for _, cut := range []bool{false, true} {
		d := &remote{funcs: newFuncs(nil), tamper: func(r *schema.Response) {
			r.Trace, r.TraceTruncated = r.Trace[:1], cut
		}}
		r := &planner.Runner{Router: newRouter("here"), Executor: newFuncs(nil), Delegator: d, Self: "here"}
		p := mustPlan(t, delegatedChain)
		p.Trace = true
		o := r.Execute(context.Background(), p)
		require.Nil(t, o.Err)
		require.Equal(t, cut, o.TraceTruncated)
		require.Len(t, o.Trace, 3, "a and e here, one entry of the delegate")
	}
}
