package planner_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// fuzzSeeds are requests that reach every branch of planning and running.
var fuzzSeeds = []string{
	readmeRequest,
	`{"cmds": [{"name": "a", "fun": "echo", "args": ["a"]}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": ["b"]}, {"name": "b", "fun": "f", "args": ["c"]}, {"name": "c", "fun": "f", "args": ["a"]}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "kwargs": {"k": {"$ref": "b"}}}, {"name": "b", "fun": "f", "args": [[{"$ref": "a"}]]}]}`,
	`{"cmds": [{"name": "a", "fun": "f"}, {"name": "a", "fun": "f"}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": [{"x": [1, 2]}]}, {"name": "b", "fun": "f", "args": [{"$ref": "a", "path": "/0/x/1"}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": [{"x/y": {"~": 3}}]}, {"name": "b", "fun": "f", "kwargs": {"k": {"$ref": "a", "path": "/0/x~1y/~0"}}}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": [1]}, {"name": "b", "fun": "f", "args": [{"$ref": "a", "path": "/7"}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f"}, {"name": "b", "fun": "f", "args": [{"$ref": "a", "path": "a/b"}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f"}, {"name": "b", "fun": "f", "args": [{"$ref": "a", "path": "/~2"}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f"}, {"name": "b", "fun": "f", "args": [{"$ref": "a", "extra": 1}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f"}, {"name": "b", "fun": "f", "args": [{"$ref": "zzz"}]}]}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": ["x", ["a"]]}, {"name": "b", "fun": "f", "kwargs": {"p": "a", "q": {"r": "a"}}}], "results": "all"}`,
	`{"cmds": [{"name": "b", "fun": "f", "args": ["a", "a"]}, {"name": "a", "fun": "f", "args": [1]}], "results": "sinks"}`,
	`{"cmds": [], "results": "some"}`,
	`{"cmds": [{"name": "a", "fun": "f", "args": [{"$ref": "a", "path": ""}]}]}`,
	`{"id": "x", "timeout_ms": 10, "cmds": [{"name": "a", "fun": "f", "args": [[[[[[[[[[1]]]]]]]]]]}]}`,
}

// FuzzPlan decodes, parses, plans and runs arbitrary requests against an
// executor that echoes its arguments. Every rejection must be an
// INVALID_REQUEST or INVALID_ARGUMENT *schema.Error, and every success must
// return exactly the sinks' results (every result with "results": "all").
func FuzzPlan(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	echo := values(func(_ context.Context, _ string, c *planner.Call) (any, error) {
		return c.Args, nil
	})
	one := planner.RouterFunc(func(context.Context, string, []string, []string) (string, bool) { return "n1", true })
	r := &planner.Runner{Router: one, Executor: echo}

	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := codec.JSON.Decode(data)
		if err != nil {
			return
		}
		req, err := schema.ParseRequest(v)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		p, err := planner.New(req, planner.Limits{})
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if len(p.Steps) != len(req.Cmds) {
			t.Fatalf("plan has %d steps for %d commands", len(p.Steps), len(req.Cmds))
		}
		res, rerr := runOf(context.Background(), r, p)
		if rerr != nil {
			checkFuzzError(t, rerr)
			if rerr.Code != schema.CodeInvalidArgument || rerr.Step == "" {
				t.Fatalf("run error %v: want INVALID_ARGUMENT naming a step", rerr)
			}
			return
		}
		var want []string
		for _, s := range p.Steps {
			if p.All || len(s.Dependents) == 0 {
				want = append(want, s.Name)
			}
		}
		got := make([]string, 0, len(res))
		for k := range res {
			got = append(got, k)
		}
		sort.Strings(want)
		sort.Strings(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("result keys %q, want %q", got, want)
		}
	})
}

func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var e *schema.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *schema.Error", err, err)
	}
	if e.Code != schema.CodeInvalidRequest && e.Code != schema.CodeInvalidArgument {
		t.Fatalf("error %v: unexpected code %s", e, e.Code)
	}
}

// graphGen builds a request from fuzz bytes so that every input reaches the
// planner: a few commands named from a small pool whose arguments mix
// literals, bare names, $refs with good and bad pointers, and bad $ref maps.
type graphGen struct{ data []byte }

func (g *graphGen) next() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

var (
	graphNames = []string{"a", "b", "c", "d", "e", "f"}
	graphPaths = []string{"", "/0", "/1", "/0/0", "/0/k", "/k", "/~0", "/~1", "/-", "/01", "/", "a/b", "/~2"}
)

// name returns a command name, or one that names no command.
func (g *graphGen) name() string {
	i := int(g.next()) % (len(graphNames) + 1)
	if i == len(graphNames) {
		return "zz"
	}
	return graphNames[i]
}

func (g *graphGen) value(depth int) any {
	switch g.next() % 16 {
	case 0, 1, 2:
		return g.name()
	case 3, 4:
		return map[string]any{"$ref": g.name()}
	case 5, 6:
		return map[string]any{"$ref": g.name(), "path": graphPaths[int(g.next())%len(graphPaths)]}
	case 7, 8:
		if depth >= 3 {
			return int64(depth)
		}
		l := make([]any, g.next()%3)
		for i := range l {
			l[i] = g.value(depth + 1)
		}
		return l
	case 9, 10:
		if depth >= 3 {
			return "deep"
		}
		return map[string]any{"k": g.value(depth + 1)}
	case 11:
		return int64(g.next())
	case 12:
		return "lit"
	case 13:
		return nil
	case 14:
		return []any{g.name()}
	default:
		switch g.next() % 3 {
		case 0:
			return map[string]any{"$ref": g.name(), "extra": true}
		case 1:
			return map[string]any{"$ref": int64(1)}
		default:
			return map[string]any{"$ref": g.name(), "path": int64(0)}
		}
	}
}

func (g *graphGen) request() *schema.Request {
	req := &schema.Request{Results: schema.ResultsSinks}
	if g.next()&1 != 0 {
		req.Results = schema.ResultsAll
	}
	n := 1 + int(g.next())%len(graphNames)
	for i := range n {
		c := schema.Command{Name: graphNames[i], Fun: "echo"}
		if i > 0 && g.next()%16 == 0 {
			c.Name = graphNames[0]
		}
		if k := int(g.next()) % 4; k > 0 {
			c.Args = make([]any, k)
			for j := range c.Args {
				c.Args[j] = g.value(0)
			}
		}
		if k := int(g.next()) % 3; k > 0 {
			c.Kwargs = map[string]any{}
			for j := range k {
				c.Kwargs[fmt.Sprintf("k%d", j)] = g.value(0)
			}
		}
		req.Cmds = append(req.Cmds, c)
	}
	return req
}

// graphModel is an independent reading of docs/PROTOCOL.md §4 for one request:
// which commands each refers to, and whether the request is valid.
type graphModel struct {
	req   *schema.Request
	index map[string]int
	refs  [][]int // refs[i]: the commands i refers to
	bad   bool    // duplicate names or a bad $ref
}

func validPointer(p string) bool {
	if p == "" {
		return true
	}
	if p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return false
		}
	}
	return true
}

func newGraphModel(req *schema.Request) *graphModel {
	m := &graphModel{req: req, index: map[string]int{}, refs: make([][]int, len(req.Cmds))}
	for i, c := range req.Cmds {
		if _, dup := m.index[c.Name]; dup {
			m.bad = true
		}
		m.index[c.Name] = i
	}
	for i, c := range req.Cmds {
		for _, a := range c.Args {
			m.scan(i, a, true)
		}
		for _, a := range c.Kwargs {
			m.scan(i, a, true)
		}
	}
	return m
}

func (m *graphModel) scan(from int, v any, top bool) {
	switch t := v.(type) {
	case string:
		if j, ok := m.index[t]; ok && top {
			m.refs[from] = append(m.refs[from], j)
		}
	case []any:
		for _, e := range t {
			m.scan(from, e, false)
		}
	case map[string]any:
		r, isRef := t["$ref"]
		if !isRef {
			for _, e := range t {
				m.scan(from, e, false)
			}
			return
		}
		name, ok := r.(string)
		j, known := m.index[name]
		if !ok || !known {
			m.bad = true
			return
		}
		for k, e := range t {
			switch k {
			case "$ref":
			case "path":
				if p, ok := e.(string); !ok || !validPointer(p) {
					m.bad = true
				}
			default:
				m.bad = true
			}
		}
		m.refs[from] = append(m.refs[from], j)
	}
}

// order returns the commands in an order where each comes after those it
// refers to (Kahn's algorithm), or nil when there is a cycle.
func (m *graphModel) order() []int {
	n := len(m.req.Cmds)
	pending := make([]int, n)
	users := make([][]int, n)
	for i, rs := range m.refs {
		seen := map[int]bool{}
		for _, j := range rs {
			if !seen[j] {
				seen[j] = true
				pending[i]++
				users[j] = append(users[j], i)
			}
		}
	}
	var out, queue []int
	for i := range n {
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		out = append(out, i)
		for _, u := range users[i] {
			if pending[u]--; pending[u] == 0 {
				queue = append(queue, u)
			}
		}
	}
	if len(out) < n {
		return nil
	}
	return out
}

func (m *graphModel) refersTo(a, b string) bool {
	return slices.Contains(m.refs[m.index[a]], m.index[b])
}

// eval runs the request the way an echo executor would (the result is the
// resolved args), returning every command's result, or ok false when a $ref
// path in args or kwargs fails.
func (m *graphModel) eval(order []int) (results map[string]any, ok bool) {
	res := make([]any, len(m.req.Cmds))
	var sub func(v any, top bool) (any, bool)
	sub = func(v any, top bool) (any, bool) {
		switch t := v.(type) {
		case string:
			if j, ok := m.index[t]; ok && top {
				return res[j], true
			}
		case []any:
			out := make([]any, len(t))
			for i, e := range t {
				var ok bool
				if out[i], ok = sub(e, false); !ok {
					return nil, false
				}
			}
			return out, true
		case map[string]any:
			if name, isRef := t["$ref"]; isRef {
				path, _ := t["path"].(string)
				sel, err := planner.Select(res[m.index[name.(string)]], path)
				return sel, err == nil
			}
			out := make(map[string]any, len(t))
			for k, e := range t {
				var ok bool
				if out[k], ok = sub(e, false); !ok {
					return nil, false
				}
			}
			return out, true
		}
		return v, true
	}
	results = map[string]any{}
	for _, i := range order {
		c := m.req.Cmds[i]
		var args []any
		if c.Args != nil {
			args = make([]any, len(c.Args))
			for j, a := range c.Args {
				var ok bool
				if args[j], ok = sub(a, true); !ok {
					return nil, false
				}
			}
		}
		for _, a := range c.Kwargs {
			if _, ok := sub(a, true); !ok {
				return nil, false
			}
		}
		res[i] = args
		results[c.Name] = args
	}
	return results, true
}

// FuzzPlanGraph checks the planner against graphModel on requests that
// always reach it: validity, the cycle reported, and every result.
func FuzzPlanGraph(f *testing.F) {
	f.Add([]byte{0, 2, 1, 12, 1, 0, 2, 0, 0})
	f.Add([]byte{1, 3, 1, 1, 3, 1, 0, 1, 0, 2, 1, 4, 2, 3, 0})
	f.Add([]byte{0, 5, 3, 0, 2, 5, 0, 1, 2, 1, 3, 1, 0, 6, 2, 7, 1, 2, 8, 3, 2, 1})
	f.Add([]byte{1, 4, 1, 5, 0, 1, 0, 1, 0, 3, 1, 2, 6, 1, 14, 5, 0, 2, 9, 1, 0})
	echo := values(func(_ context.Context, _ string, c *planner.Call) (any, error) {
		return c.Args, nil
	})
	one := planner.RouterFunc(func(context.Context, string, []string, []string) (string, bool) { return "n1", true })
	r := &planner.Runner{Router: one, Executor: echo}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := (&graphGen{data: data}).request()
		m := newGraphModel(req)
		order := m.order()
		p, err := planner.New(req, planner.Limits{})
		if m.bad || order == nil {
			if err == nil {
				t.Fatalf("planned an invalid request (bad %v, cyclic %v): %#v", m.bad, order == nil, req.Cmds)
			}
			var e *schema.Error
			if !errors.As(err, &e) || e.Code != schema.CodeInvalidRequest {
				t.Fatalf("error %v: want INVALID_REQUEST", err)
			}
			if !m.bad {
				cyc, _ := e.Details.(map[string]any)["cycle"].([]any)
				if len(cyc) == 0 {
					t.Fatalf("cyclic request rejected without details.cycle: %v", e)
				}
				seen := map[string]bool{}
				for i, v := range cyc {
					name, next := v.(string), cyc[(i+1)%len(cyc)].(string)
					if seen[name] || !m.refersTo(name, next) {
						t.Fatalf("details.cycle %v is not a cycle of %#v", cyc, req.Cmds)
					}
					seen[name] = true
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("rejected a valid request: %v: %#v", err, req.Cmds)
		}
		got, rerr := runOf(context.Background(), r, p)
		want, ok := m.eval(order)
		if !ok {
			if rerr == nil || rerr.Code != schema.CodeInvalidArgument {
				t.Fatalf("run: %v, want INVALID_ARGUMENT for a path that fails", rerr)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("run: %v, want success", rerr)
		}
		if !p.All {
			for _, rs := range m.refs {
				for _, j := range rs {
					delete(want, req.Cmds[j].Name)
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("results %#v, want %#v", got, want)
		}
	})
}
