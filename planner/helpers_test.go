package planner_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// readmeRequest is the request of docs/PROTOCOL.md §4.
const readmeRequest = `{
  "cmds": [
    {"name": "|first",  "fun": "echo",  "args": ["hi there!"]},
    {"name": "|second", "fun": "echo",  "args": ["|first"]},
    {"name": "|third",  "fun": "echos", "args": ["|first", "AND ME TOO"],
     "kwargs": {}, "locs": ["dataset-a"]}
  ],
  "timeout_ms": 5000,
  "results": "sinks"
}`

// decodeRequest reads a JSON request the way a node does.
func decodeRequest(t testing.TB, js string) *schema.Request {
	t.Helper()
	v, err := codec.JSON.Decode([]byte(js))
	require.NoError(t, err)
	req, err := schema.ParseRequest(v)
	require.NoError(t, err)
	return req
}

// mustPlan plans a JSON request with the default limits.
func mustPlan(t testing.TB, js string) *planner.Plan {
	t.Helper()
	p, err := planner.New(decodeRequest(t, js), planner.Limits{})
	require.NoError(t, err)
	return p
}

// planError plans a JSON request that must be rejected and returns the
// *schema.Error.
func planError(t testing.TB, js string, lim planner.Limits) *schema.Error {
	t.Helper()
	p, err := planner.New(decodeRequest(t, js), lim)
	require.Error(t, err)
	require.Nil(t, p)
	var e *schema.Error
	require.ErrorAs(t, err, &e)
	return e
}

// names returns the names of the steps at the given indexes, sorted.
func names(p *planner.Plan, idx []int) []string {
	out := make([]string, 0, len(idx))
	for _, i := range idx {
		out = append(out, p.Steps[i].Name)
	}
	sort.Strings(out)
	return out
}

// depNames returns the names of the steps that step name refers to, sorted.
func depNames(t testing.TB, p *planner.Plan, name string) []string {
	t.Helper()
	s, ok := p.Step(name)
	require.True(t, ok, "no step %q", name)
	return names(p, s.Deps)
}

// details returns e.Details as a map.
func details(t testing.TB, e *schema.Error) map[string]any {
	t.Helper()
	m, ok := e.Details.(map[string]any)
	require.True(t, ok, "details %#v is not a map", e.Details)
	return m
}

// fn is a test function run by funcs.
type fn func(ctx context.Context, node string, c *planner.Call) (any, error)

// funcs is an Executor that dispatches on the call's function name and
// counts calls per step.
type funcs struct {
	mu    sync.Mutex
	fns   map[string]fn
	calls map[string]int
	nodes map[string][]string
}

func newFuncs(fns map[string]fn) *funcs {
	f := &funcs{fns: map[string]fn{
		// echo returns its first argument.
		"echo": func(_ context.Context, _ string, c *planner.Call) (any, error) {
			if len(c.Args) == 0 {
				return nil, nil
			}
			return c.Args[0], nil
		},
		// echos returns its arguments as a list.
		"echos": func(_ context.Context, _ string, c *planner.Call) (any, error) {
			return c.Args, nil
		},
		// kw returns its keyword arguments.
		"kw": func(_ context.Context, _ string, c *planner.Call) (any, error) {
			return c.Kwargs, nil
		},
		// fail fails with FUNCTION_ERROR.
		"fail": func(_ context.Context, _ string, c *planner.Call) (any, error) {
			return nil, schema.Errorf(schema.CodeFunctionError, "%s failed", c.Step)
		},
	}, calls: map[string]int{}, nodes: map[string][]string{}}
	for k, v := range fns {
		f.fns[k] = v
	}
	return f
}

func (f *funcs) Exec(ctx context.Context, node string, c *planner.Call) (planner.Result, error) {
	f.mu.Lock()
	f.calls[c.Step]++
	f.nodes[c.Step] = append(f.nodes[c.Step], node)
	g, ok := f.fns[c.Fun]
	f.mu.Unlock()
	if !ok {
		return planner.Result{}, schema.Errorf(schema.CodeNoRoute, "no function %s", c.Fun)
	}
	v, err := g(ctx, node, c)
	return planner.Result{Value: v}, err
}

// values is the Executor of g, which returns only the step's value.
func values(g fn) planner.Executor {
	return planner.ExecutorFunc(func(ctx context.Context, node string, c *planner.Call) (planner.Result, error) {
		v, err := g(ctx, node, c)
		return planner.Result{Value: v}, err
	})
}

// Calls returns how many times step was executed.
func (f *funcs) Calls(step string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[step]
}

// Total returns how many executions there were.
func (f *funcs) Total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// Nodes returns the nodes step was sent to, in order.
func (f *funcs) Nodes(step string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nodes[step])
}

// route is one call to a Router.
type route struct {
	Fun     string
	Locs    []string
	Exclude []string
}

// router is a Router over a fixed list of nodes: it returns the first one
// not excluded, and records every call.
type router struct {
	mu    sync.Mutex
	nodes []string
	calls []route
}

func newRouter(nodes ...string) *router { return &router{nodes: nodes} }

func (r *router) Route(_ context.Context, fun string, locs, exclude []string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, route{Fun: fun, Locs: slices.Clone(locs), Exclude: slices.Clone(exclude)})
	for _, n := range r.nodes {
		if !slices.Contains(exclude, n) {
			return n, true
		}
	}
	return "", false
}

// Calls returns the calls made so far.
func (r *router) Calls() []route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

var (
	_ planner.Executor = (*funcs)(nil)
	_ planner.Router   = (*router)(nil)
	_ planner.Observer = (*testwait.Events)(nil)
)

// codeOf returns the code of err, which must be a *schema.Error.
func codeOf(t testing.TB, err error) schema.Code {
	t.Helper()
	var e *schema.Error
	require.True(t, errors.As(err, &e), "%v is not a *schema.Error", err)
	return e.Code
}

// runOf runs p with r and returns its error as an *schema.Error.
func runOf(ctx context.Context, r *planner.Runner, p *planner.Plan) (map[string]any, *schema.Error) {
	got, err := r.Run(ctx, p)
	return got, schema.AsError(err)
}

// callOf calls c with r and returns its error as an *schema.Error.
func callOf(ctx context.Context, r *planner.Runner, c *planner.Call) (any, *schema.Error) {
	v, err := r.Call(ctx, c)
	return v, schema.AsError(err)
}
