package planner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// Delegator lets a Runner send a run of steps that all have to go to the
// same other node there in one message, to be planned and run there as one
// unit (a request on that node's own rpc subject, docs/PROTOCOL.md §4.6),
// instead of one round trip per step.
type Delegator interface {
	// Pinned returns the only live node that can run fun with all of locs;
	// ok is false when none or several can.
	Pinned(fun string, locs []string) (node string, ok bool)
	// Delegate sends req to node and returns its response. An error
	// wrapping ErrNotDelegated means that nothing of req ran: the Runner
	// then runs its steps one by one.
	Delegate(ctx context.Context, node string, req *schema.Request) (*schema.Response, error)
}

// ErrNotDelegated is wrapped by a Delegate error after which the steps run
// one by one: the node was gone, full, or refused the request unread.
var ErrNotDelegated = errors.New("planner: sub-graph not delegated")

// DefaultMaxDelegated is the default of Runner.MaxDelegated.
const DefaultMaxDelegated = 256

// segment is a run of steps delegated as one unit.
type segment struct {
	node   string
	steps  []int          // in an order where every step follows its inputs
	in     map[int]string // step index → its name in the sub-request
	prefix string         // of every name in the sub-request
	all    bool           // the sub-request returns every result
}

// segment returns the steps to delegate with ready step i, or nil: i must
// be pinned to a node other than r.Self, and so must at least one step
// that could run right after it there (its inputs done or in the segment).
// With Continue a failed step's dependents are told apart one by one, so
// nothing is delegated.
func (r *Runner) segment(p *Plan, i int, done, claimed []bool) *segment {
	if r.Delegator == nil || p.Continue || len(p.Steps[i].Dependents) == 0 {
		return nil
	}
	first := p.Steps[i]
	node, ok := r.Delegator.Pinned(first.Fun, first.Locs)
	if !ok || node == r.Self {
		return nil
	}
	seg := &segment{node: node, steps: []int{i}, in: map[int]string{i: ""}}
	r.grow(p, seg, done, claimed)
	if len(seg.steps) < 2 {
		return nil
	}
	// Names no result of the rest of the graph will equal: a string
	// argument equal to a command's name is a reference.
	seg.prefix = "~" + strconv.FormatUint(rand.Uint64(), 36) + "."
	for k, j := range seg.steps {
		seg.in[j] = seg.prefix + strconv.Itoa(k)
	}
	// The sub-request returns its sinks' results, unless the rest of the
	// graph (or the caller, with All) needs one of its other steps'.
	seg.all = p.All
	for _, j := range seg.steps {
		for _, d := range p.Steps[j].Dependents {
			if _, in := seg.in[d]; !in && !sinkOf(p, seg, j) {
				seg.all = true
			}
		}
	}
	return seg
}

// grow adds to seg, breadth first and up to MaxDelegated steps, the
// dependents of its steps that are pinned to its node too, are neither
// claimed nor done, and whose inputs are ready or in seg.
func (r *Runner) grow(p *Plan, seg *segment, done, claimed []bool) {
	limit := r.MaxDelegated
	if limit <= 0 {
		limit = DefaultMaxDelegated
	}
	for k := 0; k < len(seg.steps) && len(seg.steps) < limit; k++ {
		for _, t := range p.Steps[seg.steps[k]].Dependents {
			if _, in := seg.in[t]; in || claimed[t] || done[t] || len(seg.steps) >= limit || !inputsReady(p.Steps[t], done, seg.in) {
				continue
			}
			if n, ok := r.Delegator.Pinned(p.Steps[t].Fun, p.Steps[t].Locs); ok && n == seg.node {
				seg.steps = append(seg.steps, t)
				seg.in[t] = ""
			}
		}
	}
}

// sinkOf reports whether step j has no dependent inside seg (so the
// sub-request returns its result even when it returns only its sinks).
func sinkOf(p *Plan, seg *segment, j int) bool {
	for _, d := range p.Steps[j].Dependents {
		if _, in := seg.in[d]; in {
			return false
		}
	}
	return true
}

func inputsReady(s *Step, done []bool, in map[int]string) bool {
	for _, d := range s.Deps {
		if _, ok := in[d]; !ok && !done[d] {
			return false
		}
	}
	return true
}

// errUnsafe: a value cannot go into the sub-request as it is (it would read
// as a reference there).
var errUnsafe = errors.New("planner: value reads as a reference")

// request builds the sub-request of seg: its steps under their new names,
// references inside seg kept, the others replaced by their results.
func (r *Runner) request(ctx context.Context, p *Plan, seg *segment, results []any, traced bool) (*schema.Request, error) {
	req := &schema.Request{ID: delegatedID(p.ID, seg.in[seg.steps[0]]), Cmds: make([]schema.Command, len(seg.steps)),
		RouteWaitMS: p.RouteWait.Milliseconds(), Trace: traced}
	if seg.all {
		req.Results = schema.ResultsAll
	}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMS, req.DeadlineMS = schema.Budget(time.Now(), dl)
	}
	for k, j := range seg.steps {
		s := p.Steps[j]
		c := schema.Command{Name: seg.in[j], Fun: s.Fun, Locs: s.Locs, Args: s.Args, Kwargs: s.Kwargs}
		if len(s.Args) > 0 {
			c.Args = make([]any, len(s.Args))
			for a, v := range s.Args {
				var err error
				if c.Args[a], err = p.delegated(v, results, seg); err != nil {
					return nil, err
				}
			}
		}
		if len(s.Kwargs) > 0 {
			c.Kwargs = make(map[string]any, len(s.Kwargs))
			for key, v := range s.Kwargs {
				var err error
				if c.Kwargs[key], err = p.delegated(v, results, seg); err != nil {
					return nil, err
				}
			}
		}
		req.Cmds[k] = c
	}
	return req, nil
}

// delegatedID is the sub-request's id: the request's (clipped) and the
// segment's prefix.
func delegatedID(id, name string) string {
	const keep = schema.MaxRequestIDLen - 32
	if len(id) > keep {
		id = id[:keep]
	}
	return id + "/" + name
}

// delegated returns v, a top-level argument, for the sub-request: a
// reference to a step of seg under its new name, one to another step
// replaced by its result (which must not read as a reference), and
// literals as they are (a top-level string must not name a step of the
// sub-request).
func (p *Plan) delegated(v any, results []any, seg *segment) (any, error) {
	if s, ok := v.(string); ok {
		if _, isStep := p.index(s); !isStep {
			return safe(v, true, seg)
		}
	}
	out, _, err := p.rewrite(v, true, func(name, path string, isRef bool) (any, error) {
		i, _ := p.index(name)
		if n, in := seg.in[i]; in {
			if !isRef {
				return n, nil
			}
			ref := map[string]any{"$ref": n}
			if path != "" {
				ref["path"] = path
			}
			return ref, nil
		}
		if !isRef {
			return safe(results[i], true, seg)
		}
		sel, err := Select(results[i], path)
		if err != nil {
			return nil, err // the step itself reports it, when run one by one
		}
		return safe(sel, false, seg)
	})
	return out, err
}

// safeNodes bounds the values safe walks: a larger input is not delegated.
const safeNodes = 4096

// safe returns v when it cannot read as a reference in the sub-request: no
// map in it holds "$ref", and, at the top, it does not start with the
// prefix of the sub-request's names.
func safe(v any, top bool, seg *segment) (any, error) {
	n := 0
	var walk func(v any, top bool) bool
	walk = func(v any, top bool) bool {
		if n++; n > safeNodes {
			return false
		}
		switch t := v.(type) {
		case string:
			if top && strings.HasPrefix(t, seg.prefix) {
				return false // it could name a step of the sub-request
			}
		case []any:
			for _, e := range t {
				if !walk(e, false) {
					return false
				}
			}
		case map[string]any:
			if _, ok := t["$ref"]; ok {
				return false
			}
			for _, e := range t {
				if !walk(e, false) {
					return false
				}
			}
		}
		return true
	}
	if !walk(v, top) {
		return nil, errUnsafe
	}
	return v, nil
}

// delegate runs seg on its node and returns a completion for each of its
// steps, or, when nothing ran there, one completion asking for its steps to
// run one by one.
func (r *Runner) delegate(ctx context.Context, p *Plan, seg *segment, results []any, tr *tracer) []completion {
	req, err := r.request(ctx, p, seg, results, tr != nil)
	if err != nil {
		return []completion{{step: seg.steps[0], requeue: seg.steps}}
	}
	sent := time.Now()
	resp, err := r.Delegator.Delegate(ctx, seg.node, req)
	if err == nil && resp == nil {
		resp = &schema.Response{}
	}
	if errors.Is(err, ErrNotDelegated) {
		if r.Logger != nil {
			r.Logger.Debug("steps not delegated", "request_id", p.ID, "node", seg.node, "steps", len(seg.steps), "error", err)
		}
		return []completion{{step: seg.steps[0], requeue: seg.steps}}
	}
	byName := make(map[string]int, len(seg.steps))
	for _, j := range seg.steps {
		byName[seg.in[j]] = j
	}
	if resp != nil && tr != nil {
		seg.trace(p, resp, tr, sent, byName)
	}
	failed, failedStep := seg.failure(ctx, p, resp, err, byName)
	out := make([]completion, 0, len(seg.steps))
	var later []completion
	took := time.Since(sent)
	for _, j := range seg.steps {
		c := completion{step: j, node: seg.node}
		var ok bool
		if resp != nil {
			c.result, ok = resp.Results[seg.in[j]]
		}
		switch {
		case failed == nil:
		case j == failedStep:
			c.err = failed
		case !ok:
			c.err = failed // not run, or its result is not known here: the request fails anyway
		}
		if r.Observer != nil && (c.err == nil || j == failedStep) {
			r.Observer.StepDone(StepEvent{RequestID: p.ID, Step: p.Steps[j].Name, Fun: p.Steps[j].Fun, Node: seg.node,
				Attempts: 1, Start: sent, Duration: took, Err: c.err})
		}
		if c.err != nil && j != failedStep {
			later = append(later, c)
			continue
		}
		out = append(out, c)
	}
	// The failed step's error first among the errors: it is the request's.
	return append(out, later...)
}

// trace adds the entries of the sub-request's trace to the request's,
// under the request's step names and with times from its receipt.
func (seg *segment) trace(p *Plan, resp *schema.Response, tr *tracer, sent time.Time, byName map[string]int) {
	offset := sent.Sub(tr.received).Microseconds()
	for _, e := range resp.Trace {
		if j, ok := byName[e.Step]; ok {
			e.Step = p.Steps[j].Name
			e.StartUS += offset
			tr.add(e)
		}
	}
	if resp.TraceTruncated {
		tr.cut()
	}
}

// failure returns the error of a delegation, if it failed, and the step
// it names: the delegate's error (or err, when no response came), or,
// for a response that says it succeeded but lacks a result the rest of
// the request needs, INTERNAL naming the node: a step must never read a
// result that did not come as null.
func (seg *segment) failure(ctx context.Context, p *Plan, resp *schema.Response, err error, byName map[string]int) (*schema.Error, int) {
	var failed *schema.Error
	switch {
	case err != nil:
		failed = stepError(ctx, err)
	case resp.Error != nil:
		failed = resp.Error
	default:
		for _, j := range seg.steps {
			if _, ok := resp.Results[seg.in[j]]; !ok && (seg.all || sinkOf(p, seg, j)) {
				return &schema.Error{Code: schema.CodeInternal, Step: p.Steps[j].Name, Node: seg.node,
					Message: fmt.Sprintf("node %s answered the steps delegated to it without the result of step %s", seg.node, schema.Clip(p.Steps[j].Name))}, j
			}
		}
		return nil, -1
	}
	step := seg.steps[0]
	if j, ok := byName[failed.Step]; ok {
		step = j
	}
	c := *failed
	c.Step, c.Node = p.Steps[step].Name, orNode(c.Node, seg.node)
	return &c, step
}

func orNode(n, alt string) string {
	if n == "" {
		return alt
	}
	return n
}
