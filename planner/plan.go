// Package planner turns an RPC request into a dependency graph (a Plan) and
// runs it: every step starts the moment the steps it refers to have
// finished, is routed to an eligible node, and the first failure cancels the
// rest (docs/PROTOCOL.md §4, §5, §8).
//
// Planning is pure. Running talks to the world only through the small Router
// and Executor interfaces, so the package imports nothing from NATS and can
// be fuzzed and benchmarked on its own.
package planner

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// Limits bound what a request may ask. Zero fields take the defaults.
type Limits struct {
	// MaxCommands is the most commands one request may hold. Default 1000.
	MaxCommands int
	// MaxNameLen is the longest command name, in bytes. Default 256.
	MaxNameLen int
	// MaxDepth is the deepest nesting of lists and maps inside a command's
	// args or kwargs. Default 64.
	MaxDepth int
}

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits { return Limits{MaxCommands: 1000, MaxNameLen: 256, MaxDepth: 64} }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxCommands <= 0 {
		l.MaxCommands = d.MaxCommands
	}
	if l.MaxNameLen <= 0 {
		l.MaxNameLen = d.MaxNameLen
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	return l
}

// Step is one command of a Plan.
type Step struct {
	Index  int
	Name   string
	Fun    string
	Locs   []string
	Args   []any
	Kwargs map[string]any
	// Deps are the indexes of the steps this one refers to (no repeats).
	Deps []int
	// Dependents are the indexes of the steps that refer to this one.
	Dependents []int
	// hasRefs is true when Args or Kwargs hold a reference to substitute.
	hasRefs bool
}

// Plan is a checked, acyclic request ready to run.
type Plan struct {
	ID    string
	Steps []*Step
	All   bool // return every result, not only the sinks
	// Continue: a failed step fails only the steps that depend on it
	// (on_error "continue"); the others run to the end.
	Continue bool
	// RouteWait: a step with no eligible node waits up to this long for
	// one (route_wait_ms).
	RouteWait time.Duration
	// Trace: the Outcome carries one entry per step attempt.
	Trace bool
	// OnAttempt, when set, is told of each step attempt as it ends, on the
	// goroutine that ran it (for a stream's step events).
	OnAttempt func(schema.TraceEntry)
	// Received is when the planner received the request: a trace's start
	// times count from it. Zero: when Execute began.
	Received time.Time
	// Journal, when set, records the result of each step that another
	// step reads, before that step starts, and gives the results recorded
	// by an earlier run of the request, whose steps do not run again (a
	// durable request, docs/PROTOCOL.md §4.8). A sink's result is not
	// recorded: it is the request's outcome. Steps are then never
	// delegated.
	Journal Journal
	byName  map[string]int // by step name; nil for a plan of few steps (see index)
	initial []int          // steps with no dependencies
}

// maxRouteWaitMS caps route_wait_ms at a day, far beyond any budget.
const maxRouteWaitMS = 24 * 3600 * 1000

// Sinks returns the indexes of the steps no other step refers to.
func (p *Plan) Sinks() []int {
	var out []int
	for _, s := range p.Steps {
		if len(s.Dependents) == 0 {
			out = append(out, s.Index)
		}
	}
	return out
}

// fewSteps is how many steps a plan looks up by scanning them rather than
// in a map, which would cost allocations on every request.
const fewSteps = 8

// index returns the index of the step with the given name.
func (p *Plan) index(name string) (int, bool) {
	if p.byName != nil {
		i, ok := p.byName[name]
		return i, ok
	}
	for i, s := range p.Steps {
		if s != nil && s.Name == name {
			return i, true
		}
	}
	return 0, false
}

// Step returns the step with the given name.
func (p *Plan) Step(name string) (*Step, bool) {
	i, ok := p.index(name)
	if !ok {
		return nil, false
	}
	return p.Steps[i], true
}

func invalid(details map[string]any, format string, args ...any) *schema.Error {
	return &schema.Error{Code: schema.CodeInvalidRequest, Message: fmt.Sprintf(format, args...), Details: details}
}

// New checks req and builds its Plan: names are unique and within limits,
// every reference names a command, every $ref path is a well-formed JSON
// Pointer, and there is no cycle. Errors are *schema.Error with code
// INVALID_REQUEST; a cycle lists its names in details.cycle.
func New(req *schema.Request, lim Limits) (*Plan, error) {
	lim = lim.withDefaults()
	if len(req.Cmds) == 0 {
		return nil, invalid(map[string]any{"key": "cmds"}, "cmds: must hold at least one command")
	}
	if len(req.Cmds) > lim.MaxCommands {
		return nil, invalid(map[string]any{"key": "cmds", "limit": "max_commands", "max": int64(lim.MaxCommands)},
			"cmds: %d commands exceed the limit %s", len(req.Cmds), schema.LimitText("max_commands", int64(lim.MaxCommands)))
	}
	p := &Plan{
		ID:       req.ID,
		Steps:    make([]*Step, len(req.Cmds)),
		All:      req.Results == schema.ResultsAll,
		Continue: req.OnError == schema.OnErrorContinue,
		Trace:    req.Trace,
		// Capped in milliseconds first: a huge route_wait_ms must not
		// overflow (the request's budget bounds the wait anyway).
		RouteWait: time.Duration(min(req.RouteWaitMS, maxRouteWaitMS)) * time.Millisecond,
	}
	if err := p.addSteps(req.Cmds, lim); err != nil {
		return nil, err
	}
	linked, err := p.link(lim)
	if err != nil {
		return nil, err
	}
	if !linked {
		return p, nil // no references, no cycle
	}
	if cyc := p.findCycle(); cyc != nil {
		return nil, invalid(map[string]any{"cycle": toAny(cyc)}, "dependency cycle: %s -> %s", strings.Join(cyc, " -> "), cyc[0])
	}
	return p, nil
}

// addSteps checks the names of cmds (not empty, within MaxNameLen, no
// duplicate) and makes a Step of each.
func (p *Plan) addSteps(cmds []schema.Command, lim Limits) error {
	if len(cmds) > fewSteps {
		p.byName = make(map[string]int, len(cmds))
	}
	steps := make([]Step, len(cmds)) // one allocation for every step
	for i := range cmds {
		c := &cmds[i]
		if c.Name == "" {
			return invalid(map[string]any{"key": fmt.Sprintf("cmds[%d].name", i)}, "cmds[%d].name: must not be empty", i)
		}
		if len(c.Name) > lim.MaxNameLen {
			return invalid(map[string]any{"key": fmt.Sprintf("cmds[%d].name", i), "limit": "max_name_len", "max": int64(lim.MaxNameLen)},
				"cmds[%d].name: %d bytes exceed the limit max_name_len=%d", i, len(c.Name), lim.MaxNameLen)
		}
		if _, dup := p.index(c.Name); dup {
			return invalid(map[string]any{"key": fmt.Sprintf("cmds[%d].name", i), "name": c.Name},
				"duplicate command name %q", c.Name)
		}
		if p.byName != nil {
			p.byName[c.Name] = i
		}
		steps[i] = Step{Index: i, Name: c.Name, Fun: c.Fun, Locs: c.Locs, Args: c.Args, Kwargs: c.Kwargs}
		p.Steps[i] = &steps[i]
	}
	return nil
}

// link finds the steps each step refers to (its Deps, within MaxDepth of
// nesting), their Dependents and the steps with no inputs, and reports
// whether any step refers to another.
func (p *Plan) link(lim Limits) (linked bool, err error) {
	var deps depSet
	add := deps.add(p)
	for _, s := range p.Steps {
		deps.reset()
		for _, a := range s.Args {
			if err := p.collect(a, 0, lim.MaxDepth, s.Name, add); err != nil {
				return false, err
			}
		}
		for _, a := range s.Kwargs {
			if err := p.collect(a, 0, lim.MaxDepth, s.Name, add); err != nil {
				return false, err
			}
		}
		s.hasRefs = len(deps.list) > 0
		linked = linked || s.hasRefs
		if s.hasRefs {
			s.Deps = slices.Clone(deps.list)
			sortInts(s.Deps)
		}
	}
	for _, s := range p.Steps {
		for _, d := range s.Deps {
			p.Steps[d].Dependents = append(p.Steps[d].Dependents, s.Index)
		}
		if len(s.Deps) == 0 {
			p.initial = append(p.initial, s.Index)
		}
	}
	return linked, nil
}

// depSet collects the distinct steps one step refers to: in a list while
// they are few, with a map beside it once they are many (a step may hold
// very many references).
type depSet struct {
	list []int
	seen map[int]bool
}

func (d *depSet) reset() {
	d.list = d.list[:0]
	d.seen = nil
}

// add returns the function that adds the step named by a reference.
func (d *depSet) add(p *Plan) func(string) {
	return func(name string) {
		i, _ := p.index(name)
		switch {
		case d.seen != nil:
			if d.seen[i] {
				return
			}
			d.seen[i] = true
		case slices.Contains(d.list, i):
			return
		case len(d.list) >= 16:
			d.seen = make(map[int]bool, 2*len(d.list))
			for _, j := range d.list {
				d.seen[j] = true
			}
			d.seen[i] = true
		}
		d.list = append(d.list, i)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// refOf reports whether v is a {"$ref": name, "path": pointer} map, returning
// its name and path. A map holding "$ref" is always a reference: a non-string
// name or path, or any other key, is an error.
func refOf(m map[string]any) (name, path string, isRef bool, err error) {
	rv, ok := m["$ref"]
	if !ok {
		return "", "", false, nil
	}
	name, ok = rv.(string)
	if !ok {
		return "", "", true, fmt.Errorf("$ref must be a string")
	}
	for k, v := range m {
		switch k {
		case "$ref":
		case "path":
			if path, ok = v.(string); !ok {
				return "", "", true, fmt.Errorf("$ref %q: path must be a string", name)
			}
		default:
			return "", "", true, fmt.Errorf("$ref %q: unexpected key %q (only \"$ref\" and \"path\")", name, k)
		}
	}
	return name, path, true, nil
}

// collect finds the references in v, calling add for each; depth 0 is a
// top-level argument.
func (p *Plan) collect(v any, depth, maxDepth int, step string, add func(string)) error {
	switch v.(type) {
	case []any, map[string]any:
		// depth lists and maps enclose this one.
		if depth >= maxDepth {
			return invalid(map[string]any{"step": step, "limit": "max_depth", "max": int64(maxDepth)},
				"step %s: arguments nest deeper than the limit max_depth=%d", step, maxDepth)
		}
	}
	switch t := v.(type) {
	case string:
		if depth == 0 {
			if _, ok := p.index(t); ok {
				add(t)
			}
		}
	case []any:
		for _, e := range t {
			if err := p.collect(e, depth+1, maxDepth, step, add); err != nil {
				return err
			}
		}
	case map[string]any:
		name, path, isRef, err := refOf(t)
		if err != nil {
			return invalid(map[string]any{"step": step}, "step %s: %v", step, err)
		}
		if !isRef {
			for _, e := range t {
				if err := p.collect(e, depth+1, maxDepth, step, add); err != nil {
					return err
				}
			}
			return nil
		}
		if _, ok := p.index(name); !ok {
			return invalid(map[string]any{"step": step, "ref": name}, "step %s: $ref to unknown command %q", step, name)
		}
		if _, err := ParsePointer(path); err != nil {
			return invalid(map[string]any{"step": step, "ref": name, "path": path}, "step %s: $ref %q: %v", step, name, err)
		}
		add(name)
	}
	return nil
}

// findCycle returns the names along one cycle, each once, in the order each
// refers to the next (the last refers to the first), or nil when the graph is
// acyclic.
func (p *Plan) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(p.Steps))
	var stack []int
	var cycle []string
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range p.Steps[i].Deps {
			if color[d] == grey {
				start := len(stack) - 1
				for stack[start] != d {
					start--
				}
				for _, j := range stack[start:] {
					cycle = append(cycle, p.Steps[j].Name)
				}
				return true
			}
			if color[d] == white && visit(d) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range p.Steps {
		if color[i] == white && visit(i) {
			return cycle
		}
	}
	return nil
}

// ParsePointer splits an RFC 6901 JSON Pointer into unescaped tokens. The
// empty pointer selects the whole value.
func ParsePointer(ptr string) ([]string, error) {
	if ptr == "" {
		return nil, nil
	}
	if ptr[0] != '/' {
		return nil, fmt.Errorf("path %q: a JSON Pointer starts with '/'", ptr)
	}
	parts := strings.Split(ptr[1:], "/")
	for i, s := range parts {
		for j := 0; j < len(s); j++ {
			if s[j] == '~' && (j+1 >= len(s) || (s[j+1] != '0' && s[j+1] != '1')) {
				return nil, fmt.Errorf("path %q: '~' must be followed by 0 or 1", ptr)
			}
		}
		if strings.IndexByte(s, '~') >= 0 {
			s = strings.ReplaceAll(s, "~1", "/")
			s = strings.ReplaceAll(s, "~0", "~")
		}
		parts[i] = s
	}
	return parts, nil
}

// Select applies a JSON Pointer to a value-model tree.
func Select(v any, ptr string) (any, error) {
	toks, err := ParsePointer(ptr)
	if err != nil {
		return nil, err
	}
	for i, tok := range toks {
		switch t := v.(type) {
		case map[string]any:
			e, ok := t[tok]
			if !ok {
				return nil, fmt.Errorf("path %q: no key %q at /%s", ptr, tok, strings.Join(toks[:i], "/"))
			}
			v = e
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || (len(tok) > 1 && tok[0] == '0') || tok[0] == '+' || tok[0] == '-' {
				return nil, fmt.Errorf("path %q: %q is not a list index", ptr, tok)
			}
			if n >= len(t) {
				return nil, fmt.Errorf("path %q: index %d out of range (length %d)", ptr, n, len(t))
			}
			v = t[n]
		default:
			return nil, fmt.Errorf("path %q: cannot select %q in a %s", ptr, tok, schema.KindOf(v))
		}
	}
	return v, nil
}

// resolve returns v with references replaced by results.
func (p *Plan) resolve(v any, top bool, results []any) (any, error) {
	out, _, err := p.rewrite(v, top, func(name, path string, _ bool) (any, error) {
		i, _ := p.index(name)
		sel, err := Select(results[i], path)
		if err != nil {
			return nil, fmt.Errorf("$ref %q: %w", name, err)
		}
		return sel, nil
	})
	return out, err
}

// rewrite returns v, a top-level argument when top, with each reference it
// holds replaced by what at returns for it: a top-level string naming a
// step (isRef false, path "") or a {"$ref": name, "path": pointer} map
// (isRef true). Only containers that hold a reference are copied; changed
// says whether v was. It is the walk over a planned step's references
// (collect finds and checks them while planning).
func (p *Plan) rewrite(v any, top bool, at func(name, path string, isRef bool) (any, error)) (_ any, changed bool, _ error) {
	switch t := v.(type) {
	case string:
		if !top {
			break // only a top-level string names a step
		}
		if _, ok := p.index(t); ok {
			r, err := at(t, "", false)
			return r, true, err
		}
	case []any:
		var out []any
		for j, e := range t {
			r, changed, err := p.rewrite(e, false, at)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = slices.Clone(t)
			}
			if out != nil {
				out[j] = r
			}
		}
		if out != nil {
			return out, true, nil
		}
	case map[string]any:
		if name, path, isRef, _ := refOf(t); isRef {
			r, err := at(name, path, true)
			return r, true, err
		}
		var out map[string]any
		for k, e := range t {
			r, changed, err := p.rewrite(e, false, at)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = maps.Clone(t)
			}
			if out != nil {
				out[k] = r
			}
		}
		if out != nil {
			return out, true, nil
		}
	}
	return v, false, nil
}

// Resolve returns s's args and kwargs with every reference replaced by the
// result of the step it names (results is indexed by step). A $ref path
// that fails is INVALID_ARGUMENT.
func (p *Plan) Resolve(s *Step, results []any) ([]any, map[string]any, error) {
	if !s.hasRefs {
		return s.Args, s.Kwargs, nil
	}
	args := s.Args
	if len(args) > 0 {
		args = make([]any, len(s.Args))
		for i, a := range s.Args {
			r, err := p.resolve(a, true, results)
			if err != nil {
				return nil, nil, schema.Wrap(schema.CodeInvalidArgument, err, "args[%d]", i).WithStep(s.Name, "")
			}
			args[i] = r
		}
	}
	kwargs := s.Kwargs
	if len(kwargs) > 0 {
		kwargs = make(map[string]any, len(s.Kwargs))
		for k, a := range s.Kwargs {
			r, err := p.resolve(a, true, results)
			if err != nil {
				return nil, nil, schema.Wrap(schema.CodeInvalidArgument, err, "kwargs.%s", k).WithStep(s.Name, "")
			}
			kwargs[k] = r
		}
	}
	return args, kwargs, nil
}
