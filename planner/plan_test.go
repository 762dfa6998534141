package planner_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// runJSON plans and runs a JSON request against the test functions on one
// node.
func runJSON(t *testing.T, js string) (map[string]any, *schema.Error) {
	t.Helper()
	p := mustPlan(t, js)
	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(nil)}
	return runOf(context.Background(), r, p)
}

func TestPlanReadmeExample(t *testing.T) {
	p := mustPlan(t, readmeRequest)
	require.Len(t, p.Steps, 3)
	assert.Equal(t, []string{"|second", "|third"}, names(p, p.Sinks()))
	assert.Empty(t, depNames(t, p, "|first"))
	assert.Equal(t, []string{"|first"}, depNames(t, p, "|second"))
	assert.Equal(t, []string{"|first"}, depNames(t, p, "|third"))
	third, _ := p.Step("|third")
	assert.Equal(t, []string{"dataset-a"}, third.Locs)
	assert.False(t, p.All)

	got, err := runJSON(t, readmeRequest)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{
		"|second": "hi there!",
		"|third":  []any{"hi there!", "AND ME TOO"},
	}, got)
}

func TestPlanThreeReturnsOne(t *testing.T) {
	const js = `{"cmds": [
		{"name": "|first",  "fun": "echo", "args": ["hi there!"]},
		{"name": "|second", "fun": "echo", "args": ["|first"]},
		{"name": "|third",  "fun": "echo", "args": ["|second"]}]}`
	p := mustPlan(t, js)
	assert.Equal(t, []string{"|third"}, names(p, p.Sinks()))
	assert.Equal(t, []string{"|second"}, depNames(t, p, "|third"))

	got, err := runJSON(t, js)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"|third": "hi there!"}, got)
}

func TestPlanFourReturnsOne(t *testing.T) {
	const js = `{"cmds": [
		{"name": "|first",  "fun": "echo",  "args": ["hi there!"]},
		{"name": "|second", "fun": "echo",  "args": ["|first"]},
		{"name": "|third",  "fun": "echos", "args": ["|first", "AND ME TOO"]},
		{"name": "|fourth", "fun": "echos", "args": ["|second", "|third"]}]}`
	p := mustPlan(t, js)
	assert.Equal(t, []string{"|fourth"}, names(p, p.Sinks()))
	assert.Equal(t, []string{"|second", "|third"}, depNames(t, p, "|fourth"))

	got, err := runJSON(t, js)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{
		"|fourth": []any{"hi there!", []any{"hi there!", "AND ME TOO"}},
	}, got)
}

func TestPlanKwargsReferences(t *testing.T) {
	const js = `{"cmds": [
		{"name": "a", "fun": "echo", "args": [1]},
		{"name": "b", "fun": "echo", "args": [2]},
		{"name": "k", "fun": "kw", "kwargs": {"x": "a", "y": "b", "z": "not-a-name", "n": 7}}]}`
	p := mustPlan(t, js)
	assert.Equal(t, []string{"a", "b"}, depNames(t, p, "k"))
	assert.Equal(t, []string{"k"}, names(p, p.Sinks()))

	got, err := runJSON(t, js)
	require.Nil(t, err)
	assert.Equal(t, map[string]any{"k": map[string]any{
		"x": int64(1), "y": int64(2), "z": "not-a-name", "n": int64(7),
	}}, got)
}

func TestPlanRefAtDepth(t *testing.T) {
	const js = `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["A"]},
		{"name": "b", "fun": "echo", "args": ["B"]},
		{"name": "c", "fun": "echo", "args": ["C"]},
		{"name": "d", "fun": "echos",
		 "args": [{"k": [1, {"$ref": "a"}, [[{"$ref": "b"}]]]}],
		 "kwargs": {"m": {"deep": [{"x": {"$ref": "c"}}]}}}]}`
	p := mustPlan(t, js)
	assert.Equal(t, []string{"a", "b", "c"}, depNames(t, p, "d"))

	d, _ := p.Step("d")
	results := []any{"A", "B", "C", nil}
	args, kwargs, err := p.Resolve(d, results)
	require.NoError(t, err)
	assert.Equal(t, []any{map[string]any{"k": []any{int64(1), "A", []any{[]any{"B"}}}}}, args)
	assert.Equal(t, map[string]any{"m": map[string]any{"deep": []any{map[string]any{"x": "C"}}}}, kwargs)

	// The step's own arguments are not changed.
	assert.Equal(t, map[string]any{"$ref": "a"}, d.Args[0].(map[string]any)["k"].([]any)[1])

	got, rerr := runJSON(t, js)
	require.Nil(t, rerr)
	assert.Equal(t, []any{map[string]any{"k": []any{int64(1), "A", []any{[]any{"B"}}}}}, got["d"])
}

func TestPlanRefPath(t *testing.T) {
	const js = `{"cmds": [
		{"name": "src", "fun": "src"},
		{"name": "use", "fun": "kw", "kwargs": {
			"slash":  {"$ref": "src", "path": "/x~1y/~0t/1"},
			"deep":   {"$ref": "src", "path": "/x~1y/~0t/2/z"},
			"index":  {"$ref": "src", "path": "/list/0"},
			"whole":  {"$ref": "src", "path": ""},
			"nopath": {"$ref": "src"},
			"empty":  {"$ref": "src", "path": "/"},
			"tilde":  {"$ref": "src", "path": "/~01"}
		}}]}`
	src := map[string]any{
		"x/y":  map[string]any{"~t": []any{int64(10), int64(20), map[string]any{"z": "deep"}}},
		"list": []any{"first", "second"},
		"":     "empty key",
		"~1":   "tilde one",
	}
	p := mustPlan(t, js)
	use, _ := p.Step("use")
	_, kwargs, err := p.Resolve(use, []any{src, nil})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"slash":  int64(20),
		"deep":   "deep",
		"index":  "first",
		"whole":  src,
		"nopath": src,
		"empty":  "empty key",
		"tilde":  "tilde one",
	}, kwargs)

	r := &planner.Runner{Router: newRouter("n1"), Executor: newFuncs(map[string]fn{
		"src": func(context.Context, string, *planner.Call) (any, error) { return src, nil },
	})}
	got, rerr := runOf(context.Background(), r, p)
	require.Nil(t, rerr)
	assert.Equal(t, kwargs, got["use"])
}

func TestSelect(t *testing.T) {
	v := map[string]any{"a": []any{"x", "y", map[string]any{"b/c": "slash", "d~e": "tilde"}}, "n": int64(3)}
	for _, tc := range []struct {
		path string
		want any
	}{
		{"", v},
		{"/a/0", "x"},
		{"/a/1", "y"},
		{"/a/2/b~1c", "slash"},
		{"/a/2/d~0e", "tilde"},
		{"/n", int64(3)},
	} {
		got, err := planner.Select(v, tc.path)
		require.NoError(t, err, tc.path)
		assert.Equal(t, tc.want, got, tc.path)
	}
	for _, path := range []string{
		"/missing", "/a/3", "/a/-", "/a/-1", "/a/-0", "/a/+1", "/a/01", "/a/x", "/a/", "/n/0", "/a/0/0", "a", "/~2",
	} {
		_, err := planner.Select(v, path)
		assert.Error(t, err, path)
	}
}

func TestParsePointer(t *testing.T) {
	for _, tc := range []struct {
		ptr  string
		want []string
	}{
		{"", nil},
		{"/", []string{""}},
		{"/a/b", []string{"a", "b"}},
		{"/a~1b", []string{"a/b"}},
		{"/a~0b", []string{"a~b"}},
		{"/~01", []string{"~1"}},
		{"/~10", []string{"/0"}},
		{"//", []string{"", ""}},
	} {
		got, err := planner.ParsePointer(tc.ptr)
		require.NoError(t, err, tc.ptr)
		assert.Equal(t, tc.want, got, tc.ptr)
	}
	for _, ptr := range []string{"a", "a/b", "/~2", "/~", "/a~", "/~a"} {
		_, err := planner.ParsePointer(ptr)
		assert.Error(t, err, ptr)
	}
}

func TestPlanLiteralStrings(t *testing.T) {
	const js = `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["A"]},
		{"name": "b", "fun": "echos", "args": ["nope", "A", "a ", " a", "|a"]}]}`
	p := mustPlan(t, js)
	assert.Empty(t, depNames(t, p, "b"))
	assert.Equal(t, []string{"a", "b"}, names(p, p.Sinks()))

	got, err := runJSON(t, js)
	require.Nil(t, err)
	assert.Equal(t, []any{"nope", "A", "a ", " a", "|a"}, got["b"])
}

func TestPlanNestedNameIsLiteral(t *testing.T) {
	// Only a top-level args element or kwargs value, or a $ref, refers.
	const js = `{"cmds": [
		{"name": "a", "fun": "echo", "args": ["A"]},
		{"name": "b", "fun": "echos", "args": [["a"], {"k": "a"}],
		 "kwargs": {"m": {"k": "a"}, "l": ["a"]}}]}`
	p := mustPlan(t, js)
	assert.Empty(t, depNames(t, p, "b"))

	b, _ := p.Step("b")
	args, kwargs, err := p.Resolve(b, []any{"A", nil})
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"a"}, map[string]any{"k": "a"}}, args)
	assert.Equal(t, map[string]any{"m": map[string]any{"k": "a"}, "l": []any{"a"}}, kwargs)
}

func TestPlanOrderIndependent(t *testing.T) {
	cmds := []string{
		`{"name": "|first",  "fun": "echo",  "args": ["hi"]}`,
		`{"name": "|second", "fun": "echo",  "args": ["|first"]}`,
		`{"name": "|third",  "fun": "echos", "args": [{"$ref": "|first"}, "x"]}`,
		`{"name": "|fourth", "fun": "kw",    "kwargs": {"a": "|second", "b": {"$ref": "|third", "path": "/1"}}}`,
		`{"name": "|alone",  "fun": "echo",  "args": [5]}`,
	}
	want := map[string]any{
		"|fourth": map[string]any{"a": "hi", "b": "x"},
		"|alone":  int64(5),
	}
	wantAll := map[string]any{
		"|first": "hi", "|second": "hi", "|third": []any{"hi", "x"},
		"|fourth": map[string]any{"a": "hi", "b": "x"}, "|alone": int64(5),
	}
	n := 0
	permute(len(cmds), func(order []int) {
		n++
		parts := make([]string, len(order))
		for i, j := range order {
			parts[i] = cmds[j]
		}
		list := strings.Join(parts, ",")
		p := mustPlan(t, `{"cmds": [`+list+`]}`)
		assert.Equal(t, []string{"|alone", "|fourth"}, names(p, p.Sinks()), "order %v", order)
		assert.Equal(t, []string{"|second", "|third"}, depNames(t, p, "|fourth"), "order %v", order)

		got, err := runJSON(t, `{"cmds": [`+list+`]}`)
		require.Nil(t, err, "order %v", order)
		assert.Equal(t, want, got, "order %v", order)

		got, err = runJSON(t, `{"results": "all", "cmds": [`+list+`]}`)
		require.Nil(t, err, "order %v", order)
		assert.Equal(t, wantAll, got, "order %v", order)
	})
	assert.Equal(t, 120, n)
}

// permute calls f with every permutation of 0..n-1 (Heap's algorithm).
func permute(n int, f func([]int)) {
	a := make([]int, n)
	for i := range a {
		a[i] = i
	}
	var gen func(k int)
	gen = func(k int) {
		if k <= 1 {
			f(a)
			return
		}
		gen(k - 1)
		for i := 0; i < k-1; i++ {
			if k%2 == 0 {
				a[i], a[k-1] = a[k-1], a[i]
			} else {
				a[0], a[k-1] = a[k-1], a[0]
			}
			gen(k - 1)
		}
	}
	gen(n)
}

func TestPlanDuplicateNames(t *testing.T) {
	e := planError(t, `{"cmds": [
		{"name": "a", "fun": "echo"},
		{"name": "b", "fun": "echo"},
		{"name": "a", "fun": "echos"}]}`, planner.Limits{})
	assert.Equal(t, schema.CodeInvalidRequest, e.Code)
	assert.Contains(t, e.Message, `"a"`)
	assert.Equal(t, "a", details(t, e)["name"])
}

func TestPlanUnknownRef(t *testing.T) {
	for _, js := range []string{
		`{"cmds": [{"name": "a", "fun": "echo", "args": [{"$ref": "zzz"}]}]}`,
		`{"cmds": [{"name": "a", "fun": "echo", "kwargs": {"k": [{"$ref": "zzz"}]}}]}`,
		`{"cmds": [{"name": "a", "fun": "echo"}, {"name": "b", "fun": "echo", "args": [[{"$ref": "zzz", "path": "/0"}]]}]}`,
	} {
		e := planError(t, js, planner.Limits{})
		assert.Equal(t, schema.CodeInvalidRequest, e.Code, js)
		assert.Equal(t, "zzz", details(t, e)["ref"], js)
		assert.Contains(t, e.Message, "zzz", js)
	}
}

func TestPlanMalformedPointer(t *testing.T) {
	for _, path := range []string{"a/b", "/~2", "/~", "x"} {
		e := planError(t, fmt.Sprintf(`{"cmds": [
			{"name": "a", "fun": "echo"},
			{"name": "b", "fun": "echo", "args": [{"$ref": "a", "path": %q}]}]}`, path), planner.Limits{})
		assert.Equal(t, schema.CodeInvalidRequest, e.Code, path)
		assert.Equal(t, path, details(t, e)["path"], path)
		assert.Equal(t, "b", details(t, e)["step"], path)
	}
}

func TestPlanBadRefMap(t *testing.T) {
	for _, ref := range []string{
		`{"$ref": "a", "extra": 1}`,
		`{"$ref": "a", "path": "", "x": null}`,
		`{"$ref": 1}`,
		`{"$ref": "a", "path": 3}`,
		`{"$ref": null}`,
	} {
		e := planError(t, `{"cmds": [
			{"name": "a", "fun": "echo"},
			{"name": "b", "fun": "echo", "kwargs": {"k": `+ref+`}}]}`, planner.Limits{})
		assert.Equal(t, schema.CodeInvalidRequest, e.Code, ref)
		assert.Equal(t, "b", details(t, e)["step"], ref)
	}
}

// cycleOf returns details.cycle of a cycle error as strings.
func cycleOf(t *testing.T, e *schema.Error) []string {
	t.Helper()
	require.Equal(t, schema.CodeInvalidRequest, e.Code)
	raw, ok := details(t, e)["cycle"].([]any)
	require.True(t, ok, "details.cycle: %#v", details(t, e)["cycle"])
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i], ok = v.(string)
		require.True(t, ok)
	}
	return out
}

func TestPlanSelfReference(t *testing.T) {
	for _, js := range []string{
		`{"cmds": [{"name": "x", "fun": "echo"}, {"name": "a", "fun": "echo", "args": ["a"]}]}`,
		`{"cmds": [{"name": "a", "fun": "echo", "kwargs": {"k": "a"}}]}`,
		`{"cmds": [{"name": "a", "fun": "echo", "args": [[{"$ref": "a", "path": "/0"}]]}]}`,
	} {
		e := planError(t, js, planner.Limits{})
		assert.Equal(t, []string{"a"}, cycleOf(t, e), js)
	}
}

func TestPlanThreeCycle(t *testing.T) {
	// up -> a -> b -> c -> a, and down refers to c: only a, b and c form
	// the cycle.
	cmds := []string{
		`{"name": "up",   "fun": "echo", "args": ["a"]}`,
		`{"name": "a",    "fun": "echo", "args": ["b"]}`,
		`{"name": "b",    "fun": "echo", "kwargs": {"k": {"$ref": "c"}}}`,
		`{"name": "c",    "fun": "echo", "args": [["lit", {"$ref": "a"}]]}`,
		`{"name": "down", "fun": "echo", "args": ["c"]}`,
		`{"name": "free", "fun": "echo", "args": ["x"]}`,
	}
	refers := map[string]string{"a": "b", "b": "c", "c": "a"}
	permute(len(cmds), func(order []int) {
		parts := make([]string, len(order))
		for i, j := range order {
			parts[i] = cmds[j]
		}
		e := planError(t, `{"cmds": [`+strings.Join(parts, ",")+`]}`, planner.Limits{})
		cyc := cycleOf(t, e)
		require.ElementsMatch(t, []string{"a", "b", "c"}, cyc, "order %v", order)
		// Each name refers to the next; the last to the first.
		for i, name := range cyc {
			assert.Equal(t, refers[name], cyc[(i+1)%len(cyc)], "cycle %v", cyc)
		}
		assert.Contains(t, e.Message, "cycle")
	})
}

func TestPlanTooManyCommands(t *testing.T) {
	cmds := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`{"name": "s%d", "fun": "echo"}`, i)
		}
		return `{"cmds": [` + strings.Join(parts, ",") + `]}`
	}
	_ = mustPlan(t, cmds(1000))
	e := planError(t, cmds(1001), planner.Limits{})
	assert.Equal(t, schema.CodeInvalidRequest, e.Code)
	assert.Equal(t, "max_commands", details(t, e)["limit"])
	assert.Equal(t, int64(1000), details(t, e)["max"])
	assert.Contains(t, e.Message, "max_commands")

	_, err := planner.New(decodeRequest(t, cmds(3)), planner.Limits{MaxCommands: 3})
	require.NoError(t, err)
	e = planError(t, cmds(4), planner.Limits{MaxCommands: 3})
	assert.Equal(t, "max_commands", details(t, e)["limit"])
	assert.Equal(t, int64(3), details(t, e)["max"])
}

func TestPlanNameTooLong(t *testing.T) {
	req := func(name string) string {
		return fmt.Sprintf(`{"cmds": [{"name": "ok", "fun": "echo"}, {"name": %q, "fun": "echo"}]}`, name)
	}
	_ = mustPlan(t, req(strings.Repeat("n", 256)))
	e := planError(t, req(strings.Repeat("n", 257)), planner.Limits{})
	assert.Equal(t, schema.CodeInvalidRequest, e.Code)
	assert.Equal(t, "max_name_len", details(t, e)["limit"])
	assert.Equal(t, "cmds[1].name", details(t, e)["key"])

	e = planError(t, req("123456789"), planner.Limits{MaxNameLen: 8})
	assert.Equal(t, "max_name_len", details(t, e)["limit"])
	assert.Equal(t, int64(8), details(t, e)["max"])
}

func TestPlanTooDeep(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	_ = mustPlan(t, `{"cmds": [{"name": "a", "fun": "echo", "args": [`+nest(64)+`]}]}`)
	e := planError(t, `{"cmds": [{"name": "a", "fun": "echo", "args": [`+nest(100)+`]}]}`, planner.Limits{})
	assert.Equal(t, "max_depth", details(t, e)["limit"])
	e = planError(t, `{"cmds": [{"name": "a", "fun": "echo", "kwargs": {"k": `+nest(6)+`}}]}`, planner.Limits{MaxDepth: 4})
	assert.Equal(t, "max_depth", details(t, e)["limit"])
	assert.Equal(t, int64(4), details(t, e)["max"])
}

func TestPlanNoCommands(t *testing.T) {
	_, err := planner.New(&schema.Request{}, planner.Limits{})
	assert.Equal(t, schema.CodeInvalidRequest, codeOf(t, err))
}

func TestPlanMissingPathAtRunTime(t *testing.T) {
	const js = `{"cmds": [
		{"name": "src",  "fun": "echos", "args": [1, 2]},
		{"name": "use",  "fun": "echo",  "args": [{"$ref": "src", "path": "/5"}]},
		{"name": "next", "fun": "echo",  "args": ["use"]}]}`
	p := mustPlan(t, js)
	use, _ := p.Step("use")
	_, _, err := p.Resolve(use, []any{[]any{int64(1), int64(2)}, nil, nil})
	assert.Equal(t, schema.CodeInvalidArgument, codeOf(t, err))

	f := newFuncs(nil)
	r := &planner.Runner{Router: newRouter("n1"), Executor: f}
	got, rerr := runOf(context.Background(), r, p)
	require.NotNil(t, rerr)
	assert.Equal(t, schema.CodeInvalidArgument, rerr.Code)
	assert.Equal(t, "use", rerr.Step)
	assert.Contains(t, rerr.Message, "/5")
	assert.Equal(t, map[string]any{"src": []any{int64(1), int64(2)}}, got)
	assert.Equal(t, 1, f.Total(), "only src runs")

	// A path into a scalar, and a key that is not there, fail the same way.
	for _, path := range []string{"/0/x", "/x"} {
		p2 := mustPlan(t, fmt.Sprintf(`{"cmds": [
			{"name": "src", "fun": "echos"},
			{"name": "use", "fun": "echo", "args": [{"$ref": "src", "path": %q}]}]}`, path))
		use2, _ := p2.Step("use")
		_, _, err := p2.Resolve(use2, []any{[]any{int64(1)}, nil})
		assert.Equal(t, schema.CodeInvalidArgument, codeOf(t, err), path)
	}
}
