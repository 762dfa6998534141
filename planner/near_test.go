package planner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// nearRouter is a NearRouter over fixed lists of nodes by function: Route
// returns the first not excluded; RouteNear returns near when it is on
// the list, not excluded and not busy. It records the near of each call.
type nearRouter struct {
	mu    sync.Mutex
	funs  map[string][]string
	busy  map[string]bool
	nears []string // "fun near" per RouteNear call
}

func (r *nearRouter) Route(_ context.Context, fun string, _, exclude []string) (string, bool) {
	for _, n := range r.funs[fun] {
		if !slices.Contains(exclude, n) {
			return n, true
		}
	}
	return "", false
}

func (r *nearRouter) RouteNear(ctx context.Context, fun string, locs, exclude []string, near string) (string, bool) {
	r.mu.Lock()
	r.nears = append(r.nears, fun+" "+near)
	busy := r.busy[near]
	r.mu.Unlock()
	if slices.Contains(r.funs[fun], near) && !slices.Contains(exclude, near) && !busy {
		return near, true
	}
	return r.Route(ctx, fun, locs, exclude)
}

func (r *nearRouter) Nears() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.nears)
}

var _ planner.NearRouter = (*nearRouter)(nil)

// refFuncs are functions whose results are references: "make" returns a
// reference to an object of args[0] bytes; "use" returns the nodes' view
// of its arguments (which stay references: the planner never reads them).
func refFuncs() *funcs {
	return newFuncs(map[string]fn{
		"make": func(_ context.Context, node string, c *planner.Call) (any, error) {
			size, _ := c.Args[0].(int64)
			return objref.Ref{Bucket: "b", Name: c.Step + "@" + node, Size: size, SHA256: strings.Repeat("0", 64), Encoding: objref.Bytes}.Tree(), nil
		},
		"small": func(_ context.Context, node string, _ *planner.Call) (any, error) { return "inline from " + node, nil },
		"use": func(_ context.Context, node string, c *planner.Call) (any, error) {
			return fmt.Sprintf("%d args on %s", len(c.Args), node), nil
		},
	})
}

// TestNearRoutesToTheMaker: a step whose inputs are references goes to
// the node that made the most of their bytes, when the router agrees;
// without references, with NoLocality, or when that node is busy it goes
// where Route says.
func TestNearRoutesToTheMaker(t *testing.T) {
	funs := map[string][]string{"make": {"a"}, "make_b": {"b"}, "small": {"a"}, "use": {"c", "b", "a"}}
	for _, tc := range []struct {
		name, req  string
		noLocality bool
		busy       string
		wantNode   string
		wantNears  []string
	}{
		{"one input", `[{"name": "x", "fun": "make", "args": [1000]},
			{"name": "y", "fun": "use", "args": ["x"]}]`, false, "", "a", []string{"use a"}},
		{"most bytes win", `[{"name": "x1", "fun": "make", "args": [600]}, {"name": "x2", "fun": "make_b", "args": [1000]},
			{"name": "x3", "fun": "make", "args": [500]}, {"name": "y", "fun": "use", "args": ["x1", "x2", "x3"]}]`, false, "", "a", []string{"use a"}},
		{"most bytes win (b)", `[{"name": "x1", "fun": "make", "args": [400]}, {"name": "x2", "fun": "make_b", "args": [1000]},
			{"name": "x3", "fun": "make", "args": [500]}, {"name": "y", "fun": "use", "args": ["x1", "x2", "x3"]}]`, false, "", "b", []string{"use b"}},
		{"inline inputs", `[{"name": "x", "fun": "small"},
			{"name": "y", "fun": "use", "args": ["x"]}]`, false, "", "c", nil},
		{"locality off", `[{"name": "x", "fun": "make", "args": [1000]},
			{"name": "y", "fun": "use", "args": ["x"]}]`, true, "", "c", nil},
		{"maker busy", `[{"name": "x", "fun": "make", "args": [1000]},
			{"name": "y", "fun": "use", "args": ["x"]}]`, false, "a", "c", []string{"use a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := refFuncs()
			f.fns["make_b"] = f.fns["make"]
			rt := &nearRouter{funs: funs, busy: map[string]bool{tc.busy: true}}
			r := &planner.Runner{Router: rt, Executor: f, NoLocality: tc.noLocality}
			got, e := runOf(context.Background(), r, mustPlan(t, `{"cmds": `+tc.req+`}`))
			require.Nil(t, e)
			require.Equal(t, []string{tc.wantNode}, f.Nodes("y"))
			require.Contains(t, got["y"], "on "+tc.wantNode)
			require.Equal(t, tc.wantNears, rt.Nears())
		})
	}
}

// TestNearRetriesElsewhere: when the maker refuses the step before running
// it, the step goes to another eligible node, and the maker is excluded.
func TestNearRetriesElsewhere(t *testing.T) {
	f := refFuncs()
	use := f.fns["use"]
	f.fns["use"] = func(ctx context.Context, node string, c *planner.Call) (any, error) {
		if node == "a" {
			return nil, schema.Errorf(schema.CodeOverloaded, "full")
		}
		return use(ctx, node, c)
	}
	rt := &nearRouter{funs: map[string][]string{"make": {"a"}, "use": {"a", "b"}}}
	r := &planner.Runner{Router: rt, Executor: f}
	got, e := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "x", "fun": "make", "args": [1000]},
		{"name": "y", "fun": "use", "args": ["x"]}]}`))
	require.Nil(t, e)
	require.Equal(t, []string{"a", "b"}, f.Nodes("y"))
	require.Equal(t, "1 args on b", got["y"])
	require.Equal(t, []string{"use a", "use a"}, rt.Nears(), "the second RouteNear excluded a")
}

// TestNearPlainRouter: with a Router that is not a NearRouter, steps go
// where it says.
func TestNearPlainRouter(t *testing.T) {
	f := refFuncs()
	r := &planner.Runner{Router: newRouter("c", "a"), Executor: f}
	_, e := runOf(context.Background(), r, mustPlan(t, `{"cmds": [{"name": "x", "fun": "make", "args": [1000]},
		{"name": "y", "fun": "use", "args": ["x"]}]}`))
	require.Nil(t, e)
	require.Equal(t, []string{"c"}, f.Nodes("y"))
}
