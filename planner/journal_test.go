package planner_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// memJournal is a Journal in memory: what a durable request's store does,
// with the order of records kept.
type memJournal struct {
	mu      sync.Mutex
	results map[string]any
	order   []string
	fail    map[string]error
	// override, when set for a step, is the result "recorded earlier" that
	// Record returns instead of the one it is given.
	override map[string]any
}

func (j *memJournal) Recorded(step string) (any, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	v, ok := j.results[step]
	return v, ok
}

func (j *memJournal) Record(_ context.Context, step string, v any) (any, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.fail[step]; err != nil {
		return nil, err
	}
	if o, ok := j.override[step]; ok {
		v = o
	}
	if j.results == nil {
		j.results = map[string]any{}
	}
	j.results[step] = v
	j.order = append(j.order, step)
	return v, nil
}

// A plan with a Journal records each step's result, and a step recorded by
// an earlier run does not run again: its recorded result feeds the steps
// that read it.
func TestJournalResumes(t *testing.T) {
	const chain = `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["A"]},
		{"name": "b", "fun": "echos", "args": ["a", "B"]},
		{"name": "c", "fun": "echos", "args": ["b", "C"]}]}`
	j := &memJournal{}
	p := mustPlan(t, chain)
	p.Journal = j
	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Equal(t, []string{"a", "b"}, j.order, "each step recorded before the next started; the sink's result is the outcome")

	// A second run: a and b were recorded (with other values than this
	// run would make, to tell them apart); only c runs.
	j2 := &memJournal{results: map[string]any{"a": "A0", "b": []any{"A0", "B0"}}}
	p = mustPlan(t, chain)
	p.Journal = j2
	f2 := newFuncs(nil)
	r2 := &planner.Runner{Router: newRouter("n1"), Executor: f2}
	o = r2.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Zero(t, f2.Calls("a")+f2.Calls("b"), "recorded steps do not run again")
	assert.Equal(t, 1, f2.Calls("c"))
	assert.Equal(t, map[string]any{"c": []any{[]any{"A0", "B0"}, "C"}}, o.Results)
}

// The result Record returns is the one dependents read: a record made
// earlier by another planner wins over this run's.
func TestJournalRecordedWins(t *testing.T) {
	j := &memJournal{override: map[string]any{"a": "theirs"}}
	p := mustPlan(t, `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["mine"]},
		{"name": "b", "fun": "echo", "args": ["a"]}]}`)
	p.Journal = j
	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Equal(t, map[string]any{"b": "theirs"}, o.Results)
}

// A step whose result cannot be recorded fails with the journal's error,
// and the steps after it do not run. A request of one step records
// nothing: its step is a sink.
func TestJournalRecordFails(t *testing.T) {
	down := &schema.Error{Code: schema.CodeStoreUnavailable, Message: "JetStream unreachable"}
	p := mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo", "args": ["A"]}, {"name": "b", "fun": "echo", "args": ["a"]}]}`)
	p.Journal = &memJournal{fail: map[string]error{"a": down}}
	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	o := r.Execute(context.Background(), p)
	require.NotNil(t, o.Err)
	assert.True(t, errors.Is(o.Err, schema.ErrStoreUnavailable), o.Err)
	assert.Equal(t, "a", o.Err.Step)
	assert.Zero(t, f.Calls("b"))

	p = mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo", "args": ["A"]}]}`)
	j := &memJournal{fail: map[string]error{"a": down}}
	p.Journal = j
	o = r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Empty(t, j.order)
}

// A request of one step recorded before runs nothing.
func TestJournalOneStepRecorded(t *testing.T) {
	p := mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo", "args": ["A"]}]}`)
	p.Journal = &memJournal{results: map[string]any{"a": "before"}}
	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	o := r.Execute(context.Background(), p)
	require.Nil(t, o.Err)
	assert.Equal(t, map[string]any{"a": "before"}, o.Results)
	assert.Zero(t, f.Total())
}
