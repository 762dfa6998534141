package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/schema"
)

// Call is one step ready to run: references resolved.
type Call struct {
	RequestID string
	Step      string
	Fun       string
	Locs      []string
	Args      []any
	Kwargs    map[string]any
	// RouteWait: with no eligible node, wait up to this long for one
	// (see Runner.RouteWait.Watch) before NO_ROUTE.
	RouteWait time.Duration
	// Near is the node that made the most bytes of the call's inputs
	// passed by reference (objref), which the Runner routes the call to
	// when its Router is a NearRouter that agrees; "" when none.
	Near string
	// tr records the attempts when the request is traced.
	tr *tracer
	// park: a step of a run of several steps does not wait for a route
	// itself; it ends (errParked) and the run parks it (see waits).
	park bool
	// routed, when set, is called once the step found a route, before it
	// runs: a probe of its waitGroup.
	routed func()
}

// ID returns the exec id of docs/PROTOCOL.md §6: "<rpc id>/<step name>".
func (c *Call) ID() string { return c.RequestID + "/" + c.Step }

// Traced reports whether the planner traces the call's request: its
// Executor then returns the step's Timing with its result.
func (c *Call) Traced() bool { return c.tr != nil }

// Journal records the steps of a durable request: see Plan.Journal.
type Journal interface {
	// Recorded returns the result recorded for the step of that name by
	// an earlier run of the request, if one was.
	Recorded(step string) (any, bool)
	// Record records the step's result v and returns the result
	// recorded: one recorded earlier (by another planner that ran the
	// step too) wins, so that each step has one result. An error fails
	// the step with it.
	Record(ctx context.Context, step string, v any) (any, error)
}

// Router picks the node for a step.
type Router interface {
	// Route returns a live node offering fun with every loc, skipping the
	// nodes in exclude; ok is false when there is none. It may wait (until
	// ctx ends) to refresh its view before it says there is none.
	Route(ctx context.Context, fun string, locs []string, exclude []string) (node string, ok bool)
}

// NearRouter is a Router that can prefer a node for a step: the one that
// holds the step's inputs passed by reference, so that they need not be
// fetched (Call.Near).
type NearRouter interface {
	Router
	// RouteNear is Route, except that it returns near when near is one of
	// the nodes Route may return and is not overloaded compared to them.
	RouteNear(ctx context.Context, fun string, locs []string, exclude []string, near string) (node string, ok bool)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, fun string, locs []string, exclude []string) (string, bool)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, fun string, locs []string, exclude []string) (string, bool) {
	return f(ctx, fun, locs, exclude)
}

// Executor runs one step on a node. It returns the result in the value model
// or an error; errors carrying a *schema.Error keep their code, a context
// error becomes TIMEOUT or CANCELLED, anything else INTERNAL. It must return
// promptly once ctx is done.
type Executor interface {
	Exec(ctx context.Context, node string, c *Call) (Result, error)
}

// Result is what an Executor returns of a step that ran: its value and,
// when the call is traced (Call.Traced), how long it waited for a run slot
// and ran on the node that ran it (zero when unknown).
type Result struct {
	Value  any
	Timing Timing
}

// Timing is how long a step waited for a run slot and ran, on the node
// that ran it.
type Timing struct {
	Queue, Run time.Duration
	// Fetched is the bytes the node fetched from the object bucket to
	// resolve the step's arguments passed by reference.
	Fetched int64
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, node string, c *Call) (Result, error)

// Exec calls f.
func (f ExecutorFunc) Exec(ctx context.Context, node string, c *Call) (Result, error) {
	return f(ctx, node, c)
}

var (
	_ Router   = RouterFunc(nil)
	_ Executor = ExecutorFunc(nil)
)

// StepEvent describes a finished step.
type StepEvent struct {
	RequestID string
	Step      string
	Fun       string
	Node      string // the node that ran (or last tried) the step; "" when none
	Attempts  int
	Start     time.Time
	Duration  time.Duration
	Err       *schema.Error // nil on success
}

// Observer is told of every finished step. StepDone is called on the
// goroutine that ran the step, so calls for the steps of one request may
// come at the same time: it must be safe for concurrent use, quick, and
// must not block.
type Observer interface {
	StepDone(StepEvent)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(StepEvent)

// StepDone calls f.
func (f ObserverFunc) StepDone(ev StepEvent) { f(ev) }

// Runner runs plans. Its fields are read only; one Runner serves any number
// of concurrent Run calls.
type Runner struct {
	Router Router
	// Executor runs the steps routed to other nodes than Self (to every
	// node when Local is nil).
	Executor Executor
	// Local, when set, runs the steps routed to Self, in this process.
	Local Executor
	// Observer, when set, is told of every finished step.
	Observer Observer
	// Retries say how a step that did not run on its node is tried again,
	// and how one that failed there is, by its function's retry policy.
	Retries Retries
	// Logger logs step failures at debug level. Default: discard.
	Logger *slog.Logger
	// Size, when set, measures a step's result (in encoded bytes, roughly)
	// for MaxResultBytes and Memory. A result no step will read again (all
	// its dependents are done, and it is not to be returned) is released:
	// it no longer counts, and partial results of a failed request leave
	// it out.
	Size func(v any) int64
	// MaxResultBytes bounds the results one request holds at once (see
	// Size); past it the request fails with PAYLOAD_TOO_LARGE naming the
	// limit. Default DefaultMaxResultBytes.
	MaxResultBytes int64
	// RouteWait says how steps waiting for a route (Call.RouteWait) learn
	// of new nodes, and how many may wait at once.
	RouteWait RouteWait
	// Memory, when set, is shared by every request of the runner: the
	// results they hold are reserved in it, and a request whose result
	// finds no room fails with OVERLOADED.
	Memory Budget
	// Delegator, when set, sends a run of steps pinned to one other node
	// there in one message (see Delegator). Not with Plan.Continue.
	Delegator Delegator
	// Self is the node the runner plans on: steps pinned to it run here.
	Self string
	// MaxDelegated bounds the steps delegated in one message. Default
	// DefaultMaxDelegated.
	MaxDelegated int
	// NoLocality: steps are routed without regard to where their inputs
	// passed by reference were made. By default a step whose inputs
	// include such references goes, through a NearRouter, to the node
	// that made the most bytes of them (Call.Near).
	NoLocality bool

	routeWaits routeWaits
}

// Retries say how a Runner tries again a step that did not run on its
// node, and one whose function failed.
type Retries struct {
	// Max is how many times a step is re-routed after its node vanished,
	// drained or was overloaded before it ran. Default 2.
	Max int
	// OverloadAfter is the wait a step's OVERLOADED error suggests
	// (details.retry_after_ms) when every eligible node it was sent to
	// refused it for load. Default DefaultOverloadRetryAfter.
	OverloadAfter time.Duration
	// Policy, when set, returns the retry policy node advertises for fun
	// (hello.retry: membership.Table.Policy), or nil for none: a step
	// whose attempt on node failed is tried again as it says (see
	// docs/PROTOCOL.md §8). It must be safe for concurrent use.
	Policy func(node, fun string) *schema.RetryPolicy
}

// RouteWait says how a Runner's steps wait for a route (Call.RouteWait).
type RouteWait struct {
	// Watch, when set, has wake called when a node that may take fun with
	// every loc of locs appears (a node joined, announced new functions
	// or came back: membership.Table.Watch), and stop ends that: a step
	// waiting for a route tries again then, and only then. wake must be
	// safe to call from any goroutine, also after stop. Without Watch
	// such a step tries again every 25 ms.
	Watch func(fun string, locs []string, wake func()) (stop func())
	// Max bounds the steps of all the runner's requests that wait for a
	// route at once; a request with a step past it fails with OVERLOADED
	// (details.limit "max_waiting"). Each waiting step also holds
	// WaitingStepBytes of Memory. Default DefaultMaxWaiting.
	Max int
}

// routeWaits count a runner's steps waiting for a route.
type routeWaits struct {
	waiting atomic.Int64 // steps waiting for a route now
	wakes   atomic.Int64 // Watch wake-ups of waiting requests
}

// DefaultOverloadRetryAfter is the default of Runner.Retries.OverloadAfter.
const DefaultOverloadRetryAfter = 100 * time.Millisecond

// Budget is memory shared by the requests of a node; see Runner.Memory.
type Budget interface {
	TryAcquire(n int64) bool
	Release(n int64)
}

// DefaultMaxResultBytes is the default of Runner.MaxResultBytes, and of
// a node's (node.Limits.MaxResultBytes): 512 MiB.
const DefaultMaxResultBytes = 512 << 20

type completion struct {
	step   int
	result any
	err    *schema.Error
	// requeue: these steps, claimed for a delegation that did not happen,
	// run one by one instead (step and the others are not done).
	requeue []int
	// parked: step found no route and is to wait for one (Call.park).
	parked bool
	// routed: step, a probe of its waitGroup, found a route and runs; its
	// completion follows.
	routed bool
	// node is the node the step ran on (or last tried); "" when none.
	node string
}

// Run runs every step of p as soon as its inputs are ready and returns the
// results: the sinks' (or every step's when p.All). On the first failure it
// cancels the steps in flight, starts no more, and returns the error with
// the results of the steps that had finished; with p.Continue see Outcome.
// Run returns only after every step it started has returned.
func (r *Runner) Run(ctx context.Context, p *Plan) (map[string]any, error) {
	o := r.Execute(ctx, p)
	if o.Err != nil {
		return o.Results, o.Err
	}
	return o.Results, nil
}

// Outcome is how a request ended.
type Outcome struct {
	// Results are the sinks' results (every step's with Plan.All) that
	// finished.
	Results map[string]any
	// Errors, for a plan with Continue, hold the error of every step that
	// failed, and CANCELLED (details.cause: the failed step) for every step
	// skipped because a step it depends on failed.
	Errors map[string]*schema.Error
	// Err is the request's error: the first failure without Continue; with
	// Continue, only a failure of the whole request (its budget, its
	// cancel, its memory) or no step having succeeded.
	Err *schema.Error
	// Trace, for a plan with Trace, has one entry per step attempt, in the
	// order they started.
	Trace []schema.TraceEntry
	// TraceTruncated: Trace lacks entries that a node the steps were
	// delegated to left out of its response.
	TraceTruncated bool
}

// Execute runs p as Run does and returns its Outcome.
func (r *Runner) Execute(ctx context.Context, p *Plan) Outcome {
	var tr *tracer
	if p.Trace || p.OnAttempt != nil {
		tr = &tracer{received: p.Received, keep: p.Trace, on: p.OnAttempt}
		if tr.received.IsZero() {
			tr.received = time.Now()
		}
	}
	out, errs, e := r.run(ctx, p, tr)
	return Outcome{Results: out, Errors: errs, Err: e, Trace: tr.trace(), TraceTruncated: tr.wasCut()}
}

// run is Execute's body.
func (r *Runner) run(ctx context.Context, p *Plan, tr *tracer) (map[string]any, map[string]*schema.Error, *schema.Error) {
	n := len(p.Steps)
	if n == 1 && !p.Continue {
		return r.runOne(ctx, p, tr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &dataflow{r: r, p: p, tr: tr, ctx: ctx, cancel: cancel,
		out:   outputs{results: make([]any, n), done: make([]bool, n)},
		left:  unfinished{inputs: make([]int, n), readers: make([]int, n)},
		ready: append([]int(nil), p.initial...), completions: make(chan completion, n), held: r.holder(n)}
	defer f.held.releaseAll()
	for i, s := range p.Steps {
		f.left.inputs[i] = len(s.Deps)
		f.left.readers[i] = len(s.Dependents)
	}
	if r.Delegator != nil && !p.Continue && p.Journal == nil {
		f.deleg.claimed = make([]bool, n)
	}
	if p.RouteWait > 0 {
		f.w = r.newWaits(n, p.RouteWait)
		defer f.w.close()
	}
	for {
		for f.failed.first == nil && len(f.ready) > 0 {
			i := f.ready[0]
			f.ready = f.ready[1:]
			f.launch(i)
		}
		if f.inflight == 0 && (f.failed.first != nil || f.w.idle()) {
			break
		}
		f.await()
	}
	out, e := collect(p, f.out.results, f.out.done, f.held, f.failed.steps, f.failed.first)
	return out, f.failed.steps, e
}

// await takes the next thing that happens to the run: a step's completion,
// a wake of steps waiting for a route, the end of a route wait, the end of
// the request's budget while steps wait.
func (f *dataflow) await() {
	w := f.w
	var done <-chan struct{}
	if f.failed.first == nil && !w.idle() {
		done = f.ctx.Done()
	}
	select {
	case c := <-f.completions:
		f.take(c)
	case <-w.wakeC():
		w.woken(f)
	case <-w.pollC():
		w.poll(f)
	case <-w.timerC():
		w.expire(f, time.Now())
	case <-done:
		f.fail(w.ended(f))
	}
}

// take handles a step's completion.
func (f *dataflow) take(c completion) {
	switch {
	case c.routed:
		f.w.routed(f, c.step)
		return
	case c.requeue != nil:
		f.inflight -= len(c.requeue)
		f.requeue(c.requeue)
		return
	}
	f.inflight--
	if c.parked {
		f.w.parked(f, c.step)
		return
	}
	if f.w != nil {
		f.w.ran(f, c)
	}
	f.finish(c)
}

// dataflow is the state of one run of a plan of several steps. Only the
// run's goroutine touches it; steps report back on completions.
type dataflow struct {
	r           *Runner
	p           *Plan
	tr          *tracer
	ctx         context.Context
	cancel      context.CancelFunc
	out         outputs
	left        unfinished
	ready       []int
	completions chan completion
	w           *waits // with p.RouteWait
	inflight    int    // completions to come
	held        *holder
	failed      failures
	deleg       delegations // with a Delegator
}

// outputs is what the steps of a dataflow made, by step.
type outputs struct {
	results []any  // a step's result; nil once no step reads it, unless Plan.All
	done    []bool // the step succeeded
	// made, once a step's result is a reference, says by step which node
	// made each result that is one, and its size: see near.
	made []madeBy
}

// madeBy is the node that made a step's result passed by reference, and
// the referenced value's size.
type madeBy struct {
	node string
	size int64
}

// unfinished counts, per step of a dataflow, what has not finished.
type unfinished struct {
	inputs  []int // the steps it depends on
	readers []int // the steps that depend on it
}

// failures are how a dataflow failed.
type failures struct {
	first *schema.Error            // the request's error; ends the run but with p.Continue
	steps map[string]*schema.Error // with p.Continue: by step name
}

// delegations are the steps of a dataflow in delegations.
type delegations struct {
	claimed []bool       // steps a delegation runs; nil without a Delegator
	given   map[int]bool // steps a delegation gave back, to run one by one
}

// launch starts ready step i: in a delegation with the steps that can go
// with it, held while a step waiting for the same route finds out whether
// there is one, on the run's goroutine when it is the only thing to do,
// else on a goroutine of its own.
func (f *dataflow) launch(i int) {
	if v, ok := recorded(f.p, i); ok {
		f.finish(completion{step: i, result: v}) // it ran before: not again
		return
	}
	if f.deleg.claimed != nil && !f.deleg.given[i] {
		if seg := f.r.segment(f.p, i, f.out.done, f.deleg.claimed); seg != nil {
			for _, j := range seg.steps {
				f.deleg.claimed[j] = true
			}
			f.inflight += len(seg.steps)
			go func() {
				for _, c := range f.r.delegate(f.ctx, f.p, seg, f.out.results, f.tr) {
					f.completions <- c
				}
			}()
			return
		}
	}
	probe := false
	if f.w != nil {
		var run bool
		if run, probe = f.w.admit(f, i); !run {
			return
		}
	}
	f.start(i, probe)
}

// start runs step i: on the run's goroutine when it is the only thing to
// do, else on a goroutine of its own. A probe (see waitGroup) tells the
// run when it found a route, before it runs.
func (f *dataflow) start(i int, probe bool) {
	f.inflight++
	if f.inflight == 1 && len(f.ready) == 0 && f.w.idle() {
		// The only runnable step: run it here, no goroutine (its
		// completion says whether it found a route).
		f.take(f.r.step(f.ctx, f.p, i, f.out.results, f.tr, f.w != nil, nil, f.near(i)))
		return
	}
	var routed func()
	if probe {
		routed = func() { f.completions <- completion{step: i, routed: true} }
	}
	near := f.near(i)
	go func() { f.completions <- f.r.step(f.ctx, f.p, i, f.out.results, f.tr, f.w != nil, routed, near) }()
}

func (f *dataflow) fail(e *schema.Error) {
	if f.failed.first == nil {
		f.failed.first = e
		f.cancel()
	}
}

// finish takes a step's completion.
func (f *dataflow) finish(c completion) {
	p := f.p
	if c.err != nil {
		// With Continue a step's failure stays in its branch; the
		// request's own end (its budget, its cancel) and its memory
		// (held.hold below) still fail it whole.
		if p.Continue && f.ctx.Err() == nil {
			f.failed.steps = skip(p, c.step, c.err, f.failed.steps)
			return
		}
		f.fail(c.err)
		return
	}
	// The inputs of a step that succeeded live on in its result: those
	// that nobody else will read and are not to be returned are released.
	// (The inputs of a failed step stay, for the partial results.)
	for _, d := range p.Steps[c.step].Deps {
		if f.left.readers[d]--; f.left.readers[d] == 0 && !p.All {
			f.out.results[d] = nil
			f.held.release(d)
		}
	}
	if e := f.held.hold(c.step, c.result); e != nil {
		f.fail(e.WithStep(p.Steps[c.step].Name, ""))
		return
	}
	f.out.results[c.step] = c.result
	f.out.done[c.step] = true
	if c.node != "" && objref.IsRef(c.result) {
		f.noteMade(c)
	}
	for _, d := range p.Steps[c.step].Dependents {
		f.left.inputs[d]--
		if f.left.inputs[d] == 0 && (f.deleg.claimed == nil || !f.deleg.claimed[d]) {
			f.ready = append(f.ready, d)
		}
	}
}

// noteMade records the node that made c's result, a reference, and its
// size, for the steps that read it (near).
func (f *dataflow) noteMade(c completion) {
	r, err := objref.Parse(c.result.(map[string]any)[objref.KeyObj])
	if err != nil {
		return // the step that reads it will say what is wrong with it
	}
	if f.out.made == nil {
		f.out.made = make([]madeBy, len(f.p.Steps))
	}
	f.out.made[c.step] = madeBy{node: c.node, size: r.Size}
}

// near returns the node that made the most bytes of step i's inputs
// passed by reference, or "" when none is (or with NoLocality).
func (f *dataflow) near(i int) string {
	if f.out.made == nil || f.r.NoLocality {
		return ""
	}
	deps := f.p.Steps[i].Deps
	best, most := "", int64(-1)
	for k, d := range deps {
		n := f.out.made[d].node
		if n == "" || counted(f.out.made, deps[:k], n) {
			continue
		}
		var total int64
		for _, e := range deps[k:] {
			if f.out.made[e].node == n {
				total += f.out.made[e].size
			}
		}
		if total > most {
			best, most = n, total
		}
	}
	return best
}

// counted reports whether one of steps was made on node n.
func counted(made []madeBy, steps []int, n string) bool {
	for _, s := range steps {
		if made[s].node == n {
			return true
		}
	}
	return false
}

// requeue gives back the steps of a delegation that did not happen, to
// run one by one.
func (f *dataflow) requeue(steps []int) {
	if f.deleg.given == nil {
		f.deleg.given = make(map[int]bool, len(steps))
	}
	for _, j := range steps {
		f.deleg.claimed[j] = false
		f.deleg.given[j] = true
		if f.left.inputs[j] == 0 {
			f.ready = append(f.ready, j)
		}
	}
}

// runOne is run for a plan of one step (without Continue): the same
// outcome, without the bookkeeping of a graph.
func (r *Runner) runOne(ctx context.Context, p *Plan, tr *tracer) (map[string]any, map[string]*schema.Error, *schema.Error) {
	held := r.holder(1)
	defer held.releaseAll()
	var c completion
	if v, ok := recorded(p, 0); ok {
		c.result = v
	} else {
		c = r.step(ctx, p, 0, nil, tr, false, nil, "")
	}
	if c.err == nil {
		c.err = held.hold(0, c.result)
		if c.err != nil {
			c.err = c.err.WithStep(p.Steps[0].Name, "")
		}
	}
	if c.err != nil {
		return map[string]any{}, nil, c.err
	}
	return map[string]any{p.Steps[0].Name: c.result}, nil, nil
}

// collect gives a finished run's results and error: with a failure, the
// results still held; otherwise the sinks' (every step's with p.All) that
// finished, and, when a Continue run had failures and no step succeeded,
// the first failed step's error in plan order.
func collect(p *Plan, results []any, done []bool, held *holder, errs map[string]*schema.Error, failed *schema.Error) (map[string]any, *schema.Error) {
	out := make(map[string]any)
	if failed != nil {
		for i, ok := range done {
			if ok && !held.released(i) {
				out[p.Steps[i].Name] = results[i]
			}
		}
		return out, failed
	}
	succeeded := false
	for i, s := range p.Steps {
		if !done[i] {
			continue
		}
		succeeded = true
		if p.All || len(s.Dependents) == 0 {
			out[s.Name] = results[i]
		}
	}
	if errs != nil && !succeeded {
		for _, s := range p.Steps {
			if e, ok := errs[s.Name]; ok && e.Code != schema.CodeCancelled {
				return out, e
			}
		}
	}
	return out, nil
}

// skip records step i's failure e and marks every step that depends on
// it, directly or not, as skipped: CANCELLED with details.cause naming i.
// Those steps never become ready (i never finishes).
func skip(p *Plan, i int, e *schema.Error, errs map[string]*schema.Error) map[string]*schema.Error {
	if errs == nil {
		errs = map[string]*schema.Error{}
	}
	failed := p.Steps[i].Name
	errs[failed] = e
	queue := append([]int(nil), p.Steps[i].Dependents...)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		name := p.Steps[d].Name
		if _, seen := errs[name]; seen {
			continue
		}
		errs[name] = &schema.Error{Code: schema.CodeCancelled, Step: name,
			Message: fmt.Sprintf("skipped: step %s, which it depends on, failed", failed),
			Details: map[string]any{"cause": failed}}
		queue = append(queue, p.Steps[d].Dependents...)
	}
	return errs
}

// holder accounts for the results one request holds; see Runner.Size.
type holder struct {
	r     *Runner
	n     int // steps in the request
	max   int64
	total int64
	sizes []int64 // held results by step, made on first use; -1 once released
}

func (r *Runner) holder(steps int) *holder {
	h := &holder{r: r, n: steps, max: r.MaxResultBytes}
	if h.max <= 0 {
		h.max = DefaultMaxResultBytes
	}
	return h
}

// hold counts step's result, or says why the request cannot hold it.
func (h *holder) hold(step int, v any) *schema.Error {
	if h.r.Size == nil {
		return nil
	}
	n := h.r.Size(v)
	if h.total+n > h.max {
		return &schema.Error{Code: schema.CodePayloadTooLarge,
			Message: "the request's results would hold more bytes than the limit " + schema.LimitText("max_result_bytes", h.max),
			Details: map[string]any{"limit": "max_result_bytes", "max": h.max}}
	}
	if m := h.r.Memory; m != nil && !m.TryAcquire(n) {
		return &schema.Error{Code: schema.CodeOverloaded,
			Message: "the node holds as many results of requests as the limit " + schema.LimitText("max_planning_bytes", 0) + " allows",
			Details: map[string]any{"limit": "max_planning_bytes"}}
	}
	if h.sizes == nil {
		h.sizes = make([]int64, h.n)
	}
	h.sizes[step] = n
	h.total += n
	return nil
}

// release stops counting step's result, which the request no longer holds.
func (h *holder) release(step int) {
	if h.sizes == nil {
		h.sizes = make([]int64, h.n)
	}
	n := h.sizes[step]
	h.sizes[step] = -1
	if n > 0 {
		h.total -= n
		if m := h.r.Memory; m != nil {
			m.Release(n)
		}
	}
}

// released reports whether step's result was released.
func (h *holder) released(step int) bool { return h.sizes != nil && h.sizes[step] < 0 }

// releaseAll gives the request's memory back when it ends.
func (h *holder) releaseAll() {
	if m := h.r.Memory; m != nil && h.total > 0 {
		m.Release(h.total)
	}
	h.total = 0
}

// step resolves, routes and executes step i, re-routing when the node
// vanished before running it. With park, a step that finds no route ends
// parked (the run waits for it); routed, when set, is called once it found
// one. near is the node that holds most of its inputs (Call.Near).
func (r *Runner) step(ctx context.Context, p *Plan, i int, results []any, tr *tracer, park bool, routed func(), near string) completion {
	s := p.Steps[i]
	start := time.Now()
	c := completion{step: i}
	ev := StepEvent{RequestID: p.ID, Step: s.Name, Fun: s.Fun, Start: start}
	defer func() {
		if r.Observer != nil && !c.parked {
			ev.Duration = time.Since(start)
			ev.Err = c.err
			r.Observer.StepDone(ev)
		}
	}()
	// Results of dependencies were written before this step became ready
	// (the channel receive in Run orders them), and are only read here.
	args, kwargs, err := p.Resolve(s, results)
	if err != nil {
		c.err = schema.AsError(err)
		return c
	}
	call := &Call{RequestID: p.ID, Step: s.Name, Fun: s.Fun, Locs: s.Locs, Args: args, Kwargs: kwargs, RouteWait: p.RouteWait, tr: tr,
		park: park, routed: routed, Near: near}
	c.result, ev.Node, ev.Attempts, c.err = r.exec(ctx, call)
	c.node = ev.Node
	if c.err == errParked {
		c.err, c.parked = nil, true
	}
	if c.err == nil && !c.parked && p.Journal != nil && len(s.Dependents) > 0 {
		// Recorded before the steps that read it start; a sink's result
		// goes with the request's outcome.
		c.result, c.err = record(ctx, p.Journal, s.Name, c.result)
	}
	return c
}

// recorded returns the result p's Journal holds for step i, if any.
func recorded(p *Plan, i int) (any, bool) {
	if p.Journal == nil {
		return nil, false
	}
	return p.Journal.Recorded(p.Steps[i].Name)
}

// record records a step's result v in j, and returns the result recorded
// or the step's error.
func record(ctx context.Context, j Journal, step string, v any) (any, *schema.Error) {
	got, err := j.Record(ctx, step, v)
	if err != nil {
		return nil, schema.AsError(err).WithStep(step, "")
	}
	return got, nil
}

// Call routes and runs one resolved call, re-routing it when its node
// vanished, drained or was overloaded before running it. Errors name the
// call's step and the node that answered.
func (r *Runner) Call(ctx context.Context, call *Call) (any, error) {
	v, _, _, err := r.exec(ctx, call)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// executor is the Executor of the steps routed to node.
func (r *Runner) executor(node string) Executor {
	if r.Local != nil && node == r.Self {
		return r.Local
	}
	return r.Executor
}

// exec routes and runs call, re-routing it as Call says, and tries it
// again while the retry policy of the node that ran its last attempt
// says so (retryByPolicy).
func (r *Runner) exec(ctx context.Context, call *Call) (any, string, int, *schema.Error) {
	res, node, attempts, e := r.execOnce(ctx, call, 0)
	if e == nil || r.Retries.Policy == nil || e == errParked {
		return res, node, attempts, e
	}
	return r.retryByPolicy(ctx, call, node, attempts, e)
}

// execOnce routes and runs call, re-routing it as Call says. The attempts
// it makes are numbered from done+1 (done: attempts made before it).
func (r *Runner) execOnce(ctx context.Context, call *Call, done int) (result any, node string, attempts int, _ *schema.Error) {
	attempts = done
	maxRetries := r.Retries.Max
	if maxRetries <= 0 {
		maxRetries = 2
	}
	var tried []string
	var last *schema.Error
	busy := true // every node tried so far refused the step for load
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, node, attempts, contextError(ctx, err).WithStep(call.Step, node)
		}
		next, ok := r.route(ctx, call, tried)
		if !ok && last == nil && call.RouteWait > 0 {
			if call.park {
				return nil, node, attempts, errParked
			}
			var e *schema.Error
			if next, ok, e = r.waitRoute(ctx, call); e != nil {
				return nil, node, attempts, e
			}
		}
		if ok && call.routed != nil {
			call.routed()
			call.routed = nil
		}
		if !ok {
			if last != nil {
				return nil, node, attempts, r.noNodeLeft(call, node, tried, last, busy)
			}
			return nil, node, attempts, noRoute(call, 0)
		}
		node, attempts = next, done+attempt+1
		res, err := call.tr.attempt(ctx, call, node, attempts, r.executor(node))
		if err == nil {
			return res, node, attempts, nil
		}
		e := stepError(ctx, err)
		busy = busy && e.Code == schema.CodeOverloaded
		if attempt < maxRetries && Retryable(err) {
			if r.Logger != nil {
				r.Logger.Debug("step re-routed", "request_id", call.RequestID, "step", call.Step, "node", node, "code", e.Code)
			}
			tried = append(tried, node)
			last = e
			continue
		}
		if busy {
			return nil, node, attempts, r.noNodeLeft(call, node, append(tried, node), e, true)
		}
		if r.Logger != nil {
			r.Logger.Debug("step failed", "request_id", call.RequestID, "step", call.Step, "node", node, "code", e.Code, "error", e.Message)
		}
		return nil, node, attempts, e.WithStep(call.Step, node)
	}
}

// route picks the node for call: near the node that holds its inputs
// (Call.Near) when the Router can say whether it may.
func (r *Runner) route(ctx context.Context, call *Call, exclude []string) (string, bool) {
	if call.Near != "" && !r.NoLocality {
		if nr, ok := r.Router.(NearRouter); ok {
			return nr.RouteNear(ctx, call.Fun, call.Locs, exclude, call.Near)
		}
	}
	return r.Router.Route(ctx, call.Fun, call.Locs, exclude)
}

// noNodeLeft is the error of a step that every eligible node it was sent
// to (tried) refused, last being the last refusal: OVERLOADED, with the
// wait to suggest, when all of them refused it for load (they are busy, not
// gone), else NODE_UNAVAILABLE.
func (r *Runner) noNodeLeft(call *Call, node string, tried []string, last *schema.Error, busy bool) *schema.Error {
	d := map[string]any{"fun": call.Fun, "locs": toAny(orEmpty(call.Locs)), "tried": toAny(tried)}
	if !busy {
		return &schema.Error{Code: schema.CodeNodeUnavailable, Step: call.Step, Node: node,
			Message: "no other eligible node could take the step after: " + last.Message, Details: d}
	}
	wait := r.Retries.OverloadAfter
	if wait <= 0 {
		wait = DefaultOverloadRetryAfter
	}
	d["retry_after_ms"] = wait.Milliseconds()
	return &schema.Error{Code: schema.CodeOverloaded, Step: call.Step, Node: node,
		Message: fmt.Sprintf("every eligible node tried is busy (try again in %d ms): %s", wait.Milliseconds(), last.Message), Details: d}
}

// waitRoute waits up to call.RouteWait (or until ctx ends) for a node to
// route call to, trying again whenever one may have appeared: a request of
// one step waits on its own goroutine, which costs no other. When no node
// appears it returns NO_ROUTE, or the error of the end of ctx.
func (r *Runner) waitRoute(ctx context.Context, call *Call) (string, bool, *schema.Error) {
	since := time.Now()
	if e := r.hold(); e != nil {
		return "", false, e.WithStep(call.Step, "")
	}
	defer r.unhold()
	wake := make(chan struct{}, 1)
	var tick <-chan time.Time
	if r.RouteWait.Watch != nil {
		defer r.RouteWait.Watch(call.Fun, call.Locs, func() { r.routeWaits.wakes.Add(1); signal(wake) })()
	} else {
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(call.RouteWait)
	defer timer.Stop()
	for {
		// Watched before routing: no node is missed.
		if next, ok := r.Router.Route(ctx, call.Fun, call.Locs, nil); ok {
			return next, true, nil
		}
		select {
		case <-wake:
		case <-tick:
		case <-timer.C:
			if next, ok := r.Router.Route(ctx, call.Fun, call.Locs, nil); ok {
				return next, true, nil
			}
			return "", false, noRoute(call, time.Since(since))
		case <-ctx.Done():
			return "", false, waitEnded(ctx, call, time.Since(since))
		}
	}
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// Fact is what an Executor saw of one attempt of a step: the input of the
// one decision whether the step may go to another node (Retryable). The
// list is append-only.
type Fact int

// The facts an Executor reports.
const (
	// Answered: the node answered with an error object (or the error came
	// from this process); its code says what happened.
	Answered Fact = iota
	// NotSent: the step never left this process (not connected).
	NotSent
	// NoResponders: nothing listened on the node's exec subject.
	NoResponders
	// LostBeforeRun: the node was declared lost before it took the step.
	LostBeforeRun
	// LostWhileRunning: the node was declared lost (silence, a newer
	// incarnation) while the step was in flight there.
	LostWhileRunning
	// StoppedWhileRunning: the node answered that it stopped while running
	// the step.
	StoppedWhileRunning
	// AttemptDeadline: the attempt's own deadline (a retry-after) passed
	// while the request's budget had not.
	AttemptDeadline
)

// AttemptError is an Executor's error for one attempt: what happened, the
// error to report, and whether the function may run twice.
type AttemptError struct {
	Fact       Fact
	Err        *schema.Error
	Idempotent bool
}

// Error implements error.
func (a *AttemptError) Error() string { return a.Err.Error() }

// Unwrap returns the error object.
func (a *AttemptError) Unwrap() error { return a.Err }

// Retryable reports whether a step whose attempt ended with err may be
// sent to another node: when it certainly did not run there, or when it
// may run twice. This is the one place MPREG decides it; a bare
// *schema.Error counts as Answered.
func Retryable(err error) bool {
	var a *AttemptError
	if errors.As(err, &a) {
		return retryable(a.Fact, a.Err.Code, a.Idempotent)
	}
	var e *schema.Error
	return errors.As(err, &e) && retryable(Answered, e.Code, false)
}

// retryable is the decision table of Retryable.
func retryable(f Fact, c schema.Code, idempotent bool) bool {
	switch f {
	case NotSent, NoResponders, LostBeforeRun:
		return true // it did not run
	case LostWhileRunning, StoppedWhileRunning, AttemptDeadline:
		return idempotent // it may have run
	case Answered:
		// The node refused it before running it, or (NODE_UNAVAILABLE
		// without a fact) could not be reached.
		return c == schema.CodeNodeUnavailable || c == schema.CodeShuttingDown || c == schema.CodeOverloaded
	}
	return false
}

// noRoute is the NO_ROUTE error of call, which waited for a route for
// waited (with a RouteWait).
func noRoute(c *Call, waited time.Duration) *schema.Error {
	locs := orEmpty(c.Locs)
	e := &schema.Error{
		Code:    schema.CodeNoRoute,
		Message: "no live node offers " + c.Fun + " with locs " + formatLocs(locs),
		Step:    c.Step,
		Details: map[string]any{"fun": c.Fun, "locs": toAny(locs)},
	}
	if c.RouteWait > 0 {
		e.Message += fmt.Sprintf(" (waited %d ms)", waited.Milliseconds())
		e.Details.(map[string]any)["route_wait_ms"] = c.RouteWait.Milliseconds()
		e.Details.(map[string]any)["waited_ms"] = waited.Milliseconds()
	}
	return e
}

// waitEnded is the error of call whose wait for a route ctx ended after
// waited: TIMEOUT when its budget ran out, else CANCELLED.
func waitEnded(ctx context.Context, c *Call, waited time.Duration) *schema.Error {
	e := contextError(ctx, ctx.Err())
	e.Step = c.Step
	e.Message = fmt.Sprintf("%s while the step waited %d ms (of route_wait_ms %d) for a live node offering %s with locs %s",
		e.Message, waited.Milliseconds(), c.RouteWait.Milliseconds(), c.Fun, formatLocs(orEmpty(c.Locs)))
	e.Details = map[string]any{"fun": c.Fun, "locs": toAny(orEmpty(c.Locs)),
		"route_wait_ms": c.RouteWait.Milliseconds(), "waited_ms": waited.Milliseconds()}
	return e
}

func formatLocs(l []string) string {
	out := "["
	for i, s := range l {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out + "]"
}

// stepError converts an executor error to an *schema.Error (keeping it as
// the cause), mapping context errors to TIMEOUT or CANCELLED.
func stepError(ctx context.Context, err error) *schema.Error {
	var e *schema.Error
	if !errors.As(err, &e) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return contextError(ctx, err)
	}
	return schema.AsError(err)
}

// contextError is the error of a request whose context ended (err, or
// ctx's own end when err is nil): TIMEOUT or CANCELLED.
func contextError(ctx context.Context, err error) *schema.Error {
	return schema.Ended(ctx, err, "the request's time budget ran out", "cancelled")
}
