package planner_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// With on_error "continue", a failed step fails only its descendants: the
// independent branch runs to the end and its sink is returned.
func TestRunContinueOnError(t *testing.T) {
	p := mustPlan(t, `{"on_error": "continue", "cmds": [
		{"name": "a", "fun": "fail"},
		{"name": "b", "fun": "echo", "args": ["a"]},
		{"name": "c", "fun": "echos", "args": ["b", "d"]},
		{"name": "d", "fun": "echo", "args": ["D"]},
		{"name": "e", "fun": "echo", "args": ["d"]}]}`)
	require.True(t, p.Continue)
	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err, "some steps ran: no request error")
	assert.Equal(t, map[string]any{"e": "D"}, o.Results)
	require.Len(t, o.Errors, 3)
	assert.Equal(t, schema.CodeFunctionError, o.Errors["a"].Code)
	for _, skipped := range []string{"b", "c"} {
		e := o.Errors[skipped]
		assert.Equal(t, schema.CodeCancelled, e.Code, skipped)
		assert.Equal(t, skipped, e.Step)
		assert.Equal(t, map[string]any{"cause": "a"}, e.Details, skipped)
	}
	assert.Zero(t, f.Calls("b")+f.Calls("c"), "a skipped step never runs")
	assert.Equal(t, 1, f.Calls("d"))
	assert.Equal(t, 1, f.Calls("e"))

	all := mustPlan(t, `{"on_error": "continue", "results": "all", "cmds": [
		{"name": "a", "fun": "fail"},
		{"name": "d", "fun": "echo", "args": ["D"]},
		{"name": "e", "fun": "echo", "args": ["d"]}]}`)
	o = r.Execute(context.Background(), all)
	require.Nil(t, o.Err)
	assert.Equal(t, map[string]any{"d": "D", "e": "D"}, o.Results, "results: all gives every step that finished")

	// Nothing could run: the request fails with the first step's error.
	none := mustPlan(t, `{"on_error": "continue", "cmds": [
		{"name": "x", "fun": "fail"},
		{"name": "y", "fun": "fail"},
		{"name": "z", "fun": "echo", "args": ["x"]}]}`)
	o = r.Execute(context.Background(), none)
	require.NotNil(t, o.Err)
	assert.Equal(t, "x", o.Err.Step)
	assert.Len(t, o.Errors, 3)
	assert.Empty(t, o.Results)

	// Without "continue" nothing changes: the first failure fails the request.
	stop := mustPlan(t, `{"cmds": [{"name": "a", "fun": "fail"}, {"name": "d", "fun": "echo", "args": ["D"]}]}`)
	o = r.Execute(context.Background(), stop)
	require.NotNil(t, o.Err)
	assert.Nil(t, o.Errors)

	_, err := planner.New(&schema.Request{OnError: "sometimes", Cmds: []schema.Command{{Name: "a", Fun: "f"}}}, planner.DefaultLimits())
	require.NoError(t, err, "the planner takes what the parser accepted")
	_, err = schema.ParseRequest(map[string]any{"on_error": "sometimes", "cmds": []any{map[string]any{"name": "a", "fun": "f"}}})
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	require.Contains(t, err.Error(), "on_error")
}

func testwaitRecv(t *testing.T, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(wait):
		t.Fatal("the run did not end")
		return runResult{}
	}
}

// Explain names each step's deps, candidates and pick, and a NO_ROUTE
// problem for a step no node can take; nothing runs.
func TestExplain(t *testing.T) {
	p := mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo", "args": [1]}, {"name": "b", "fun": "echo", "args": ["a"], "locs": ["tpu"]}]}`)
	route := planner.RouterFunc(func(_ context.Context, _ string, locs, _ []string) (string, bool) { return "n1", len(locs) == 0 })
	cands := func(string, []string) []string { return []string{"n1", "n2"} }
	steps, problems := p.Explain(context.Background(), route, cands)
	require.Len(t, steps, 2)
	assert.Equal(t, "n1", *steps[0].Node)
	assert.Equal(t, []string{}, steps[0].Deps)
	assert.Equal(t, []string{"a"}, steps[1].Deps)
	assert.Nil(t, steps[1].Node)
	assert.Equal(t, []string{"n1", "n2"}, steps[1].Candidates)
	require.Len(t, problems, 1)
	assert.Equal(t, schema.CodeNoRoute, problems[0].Code)
	assert.Equal(t, "b", problems[0].Step)
}
