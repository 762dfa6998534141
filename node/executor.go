package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/objref"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// executor runs steps on this node, for its own planner and for peers'
// exec requests: admission (run slots and a bounded queue), a pool of
// owned worker goroutines, the running set that cancels reach, the recover
// boundary around user functions, and the step counters.
type executor struct {
	*env
	pool
	reg      *registry
	objs     *objects // values by reference
	slots    chan struct{}
	inflight atomic.Int64 // steps running or queued here
	queued   atomic.Int64 // steps waiting for a slot
	running  runningSet   // exec steps running here, by exec id (or attempt)

	steps, stepErrors, foreign atomic.Int64
	execStats                  endpointStats // for $SRV.STATS
}

func newExecutor(e *env, reg *registry) *executor {
	return &executor{env: e, reg: reg, objs: newObjects(e), slots: make(chan struct{}, e.cfg.Limits.MaxInflight),
		pool: pool{quit: make(chan struct{}), handoff: make(chan func())}}
}

// runningSet maps exec ids to the cancel funcs of the steps running here.
type runningSet struct {
	mu sync.Mutex
	m  map[string]*runEntry // a list per id: ids may repeat
}

// runEntry is one step of a runningSet: its cancel func, or its stepCtx.
type runEntry struct {
	cancel context.CancelFunc
	step   *stepCtx
	next   *runEntry
}

// inlineDecodeMax is the largest exec body decoded on the subscription's
// goroutine; larger ones are decoded on a worker, so that one big body does
// not hold up the messages behind it.
const inlineDecodeMax = 64 << 10

// onExec answers one step a peer sent to this node's exec subject. Its
// path mirrors a request's: decode → admit (readPeerStep) → invoke
// (runPeerStep) → reply (replyPeerStep). A body of up to inlineDecodeMax
// bytes is decoded on the subscription's goroutine; a function registered
// Inline runs there too when a run slot is free at once (saving a goroutine
// hand-off per call), and any other runs on an owned worker.
func (x *executor) onExec(m *nats.Msg) {
	x.work.add()
	if x.closing.Load() {
		x.work.done() // Close may have seen the node idle already
		return
	}
	if len(m.Data) > inlineDecodeMax {
		if !x.goOwned(func() {
			defer x.work.done()
			if s := x.readPeerStep(m); s != nil {
				x.runPeerStep(s, false)
			}
		}) {
			x.work.done()
		}
		return
	}
	s := x.readPeerStep(m)
	if s == nil {
		x.work.done()
		return
	}
	if s.f.inline && !objref.Mentions(s.req.Args, s.req.Kwargs) && x.tryAcquire() {
		x.runPeerStep(s, true)
		x.work.done()
		return
	}
	if !x.goOwned(func() { defer x.work.done(); x.runPeerStep(s, false) }) {
		x.work.done()
		e := schema.Errorf(schema.CodeShuttingDown, "node %s is closing", x.cfg.NodeID)
		x.stepDone(s.f.name, e, 0)
		x.replyPeerStep(s, schema.ExecReply{Error: e})
	}
}

// peerStep is one step a peer sent, on its way through the node, with
// what it needs while it runs, held here rather than allocated apart: its
// context, its place in the running set, and its reply's wire form.
type peerStep struct {
	m     *nats.Msg
	at    time.Time // received
	reply codec.Codec
	req   *schema.ExecRequest
	f     *fn
	once  sync.Once
	ctx   stepCtx
	entry runEntry
	out   struct { // the reply, set once (see replyPeerStep)
		result schema.ExecResult
		err    schema.ExecError
	}
}

// readPeerStep decodes and admits an exec message. It answers (or drops)
// the ones that cannot run and returns nil for them.
func (x *executor) readPeerStep(m *nats.Msg) *peerStep {
	s := x.decodePeerStep(m)
	if s == nil || !x.admitPeerStep(s) {
		return nil
	}
	return s
}

// decodePeerStep decodes an exec message, answering one that does not
// decode (and returning nil).
func (x *executor) decodePeerStep(m *nats.Msg) *peerStep {
	at := time.Now()
	req, _, reply, err := mesh.ReadSized(m, codec.MaxDecoded, true, schema.ReadExecRequest)
	s := &peerStep{m: m, reply: reply, at: at, req: req}
	if err != nil {
		x.replyPeerStep(s, schema.ExecReply{Error: schema.AsError(err)})
		return nil
	}
	return s
}

// admitPeerStep lets a decoded step on: it comes from this cluster (a
// foreign one is dropped, unanswered), names a function registered here,
// and the node is not draining. It answers a step refused.
func (x *executor) admitPeerStep(s *peerStep) bool {
	req := s.req
	if req.Cluster != x.cfg.Cluster {
		x.foreign.Add(1)
		if ok, held := x.logs.Allow("foreign exec"); ok {
			x.log.Warn("exec from another cluster dropped", "cluster", req.Cluster, "request_id", req.ID, "dropped_since_last_log", held)
		}
		return false // dropped: no reply
	}
	x.steps.Add(1)
	f, e := x.lookup(req.Fun)
	if x.draining.Load() {
		// New work from peers goes elsewhere; steps of requests this node
		// already took still run here.
		e = schema.Errorf(schema.CodeShuttingDown, "node %s is draining", x.cfg.NodeID)
	}
	if e != nil {
		x.stepDone(funLabel(f), e, 0)
		x.replyPeerStep(s, schema.ExecReply{Error: e})
		return false
	}
	s.f = f
	return true
}

// replyPeerStep answers s once: with the function's outcome, or with
// TIMEOUT or CANCELLED when the step's context ends first.
func (x *executor) replyPeerStep(s *peerStep, rep schema.ExecReply) {
	s.once.Do(func() {
		x.execStats.done(time.Since(s.at), rep.Error)
		// The wire form is written into s, which is on the heap already.
		var body any = &s.out.result
		if rep.Error != nil {
			s.out.err = schema.ExecError{Error: rep.Error, Timing: rep.Timing}
			body = &s.out.err
		} else {
			s.out.result = schema.ExecResult{Result: rep.Result, Timing: rep.Timing}
		}
		err := mesh.Respond(x.nc, s.m, s.reply, body, func(problem *schema.Error) any {
			if rep.Error != nil { // an error object that is too big itself
				c := *rep.Error
				return schema.ExecError{Error: &c}
			}
			problem.Node = x.cfg.NodeID
			return schema.ExecError{Error: problem}
		})
		if err != nil {
			id := ""
			if s.req != nil {
				id = s.req.ID
			}
			x.replyFailed("exec", id, err)
		}
	})
}

// runPeerStep runs an admitted peer step and answers it. slot says whether
// the caller already holds a run slot (see tryAcquire).
func (x *executor) runPeerStep(s *peerStep, slot bool) {
	req := s.req
	// No step runs longer than a request may: an exec without deadline_ms,
	// or with one further off, gets the node's maximum budget.
	s.ctx.parent = x.ctx
	s.ctx.dl = schema.Deadline(time.Now(), 0, req.DeadlineMS, x.cfg.Limits.MaxTimeout, x.cfg.Limits.MaxTimeout)
	ctx := &s.ctx
	defer ctx.cancel()
	if key := cmp.Or(req.Attempt, req.ID); key != "" {
		s.entry.step = ctx
		x.running.put(key, &s.entry)
		defer x.running.remove(key, &s.entry)
	}
	if e := x.start(ctx, slot); e != nil {
		x.stepDone(s.f.name, e, 0)
		x.replyPeerStep(s, schema.ExecReply{Error: e})
		return
	}
	began := time.Now()
	v, fetched, e := x.invokePeerStep(s)
	x.release()
	if e == nil && ctx.Err() != nil {
		// A result that came after the step's deadline (or its cancel) is
		// not one: the planner may already have given the step to another
		// node.
		e = x.stepCtxError(ctx)
	}
	ran := time.Since(began)
	x.stepDone(s.f.name, e, ran)
	var timing *schema.StepTiming
	if req.Timing {
		timing = &schema.StepTiming{QueueUS: began.Sub(s.at).Microseconds(), RunUS: ran.Microseconds(), FetchedBytes: fetched}
	}
	if e != nil {
		x.log.Debug("step failed here", "request_id", req.ID, "fun", req.Fun, "code", e.Code, "error", e.Message)
		x.replyPeerStep(s, schema.ExecReply{Error: e, Timing: timing})
		return
	}
	x.replyPeerStep(s, schema.ExecReply{Result: v, Timing: timing})
}

// invokePeerStep calls s's function on this goroutine. An Inline function
// is quick by contract and answered when it returns (a late result is
// TIMEOUT or CANCELLED all the same). Any other may outlive its context:
// the caller is then answered at once and the late result dropped.
func (x *executor) invokePeerStep(s *peerStep) (any, int64, *schema.Error) {
	req := s.req
	if s.f.inline {
		return x.invoke(&s.ctx, s.f, req.Args, req.Kwargs, stepID{req: req.ID})
	}
	ctx := s.ctx.back()
	late := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(late)
		x.replyPeerStep(s, schema.ExecReply{Error: x.stepCtxError(ctx)})
	})
	v, fetched, e := x.invoke(ctx, s.f, req.Args, req.Kwargs, stepID{req: req.ID})
	if !stop() {
		<-late // the timeout reply is out; nothing outlives this call
	}
	return v, fetched, e
}

// runStepHere is the runner's Local executor: it runs a step this node's
// planner routed to this node, in-process (runHere). A step this node
// stopped under is StoppedWhileRunning (§6.1), for planner.Retryable.
// Local steps count in x.inflight (the table's SelfLoad), not in the
// table's outstanding counter.
func (x *executor) runStepHere(ctx context.Context, _ string, c *planner.Call) (planner.Result, error) {
	v, tm, e := x.runHere(ctx, c.Fun, c.Args, c.Kwargs, stepID{c.RequestID, c.Step}, c.Traced())
	res := planner.Result{Value: v, Timing: tm}
	switch {
	case e == nil:
		return res, nil
	case e.Code == schema.CodeNodeUnavailable:
		f, _ := x.reg.get(c.Fun)
		return res, &planner.AttemptError{Fact: planner.StoppedWhileRunning, Err: e, Idempotent: f != nil && f.idempotent}
	}
	return res, e
}

// runHere runs a registered function under ctx, on an owned goroutine so
// that the caller gets TIMEOUT or CANCELLED when ctx ends even if the
// function ignores ctx. With timed it returns how long the step waited for
// its run slot and ran.
func (x *executor) runHere(ctx context.Context, fun string, args []any, kwargs map[string]any, id stepID, timed bool) (_ any, tm planner.Timing, _ *schema.Error) {
	admitted := time.Now()
	var began time.Time
	if timed {
		defer func() {
			if began.IsZero() {
				tm.Queue = time.Since(admitted)
				return
			}
			tm.Queue, tm.Run = began.Sub(admitted), time.Since(began)
		}()
	}
	f, e := x.admit(ctx, fun)
	if e != nil {
		x.stepDone(funLabel(f), e, 0)
		return nil, tm, e
	}
	began = time.Now()
	if f.inline && !objref.Mentions(args, kwargs) {
		// Quick by contract: no goroutine to guard its deadline.
		v, fetched, e := x.invoke(ctx, f, args, kwargs, id)
		x.release()
		x.stepDone(f.name, e, time.Since(began))
		tm.Fetched = fetched
		return v, tm, e
	}
	v, e, ran, fetched := x.invokeGuarded(ctx, f, args, kwargs, id)
	x.stepDone(f.name, e, ran)
	tm.Fetched = fetched
	return v, tm, e
}

// invokeGuarded calls f on an owned goroutine and returns its result, or
// the error of ctx's end as soon as ctx ends, and how long it ran (0 when
// it did not start), and the bytes it fetched. It releases f's run slot.
func (x *executor) invokeGuarded(ctx context.Context, f *fn, args []any, kwargs map[string]any, id stepID) (any, *schema.Error, time.Duration, int64) {
	began := time.Now()
	type result struct {
		v       any
		err     *schema.Error
		fetched int64
	}
	ch := make(chan result, 1)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	x.work.add()
	started := x.goOwned(func() {
		defer x.work.done()
		v, fetched, err := x.invoke(hctx, f, args, kwargs, id) // recovers panics
		x.release()                                            // before the caller can route its next step
		ch <- result{v, err, fetched}
	})
	if !started {
		x.work.done()
		x.release()
		return nil, schema.Errorf(schema.CodeShuttingDown, "node %s is closing", x.cfg.NodeID), 0, 0
	}
	select {
	case r := <-ch:
		return r.v, r.err, time.Since(began), r.fetched
	case <-ctx.Done():
		// Let ctx's end reach the handler before the deferred cancel does,
		// so that it sees DeadlineExceeded at a deadline, not Canceled.
		<-hctx.Done()
		return nil, x.stepCtxError(ctx), time.Since(began), 0
	}
}

// admit counts a step and lets it run: the function exists, the step's
// context is still live, and it holds a run slot (see acquire). The caller
// calls release when the step ends.
func (x *executor) admit(ctx context.Context, fun string) (*fn, *schema.Error) {
	x.steps.Add(1)
	f, e := x.lookup(fun)
	if e != nil {
		return nil, e
	}
	if e := x.start(ctx, false); e != nil {
		return f, e
	}
	return f, nil
}

// lookup finds a registered function; a missing one is NO_ROUTE (a step
// error, counted).
func (x *executor) lookup(fun string) (*fn, *schema.Error) {
	f, ok := x.reg.get(fun)
	if !ok {
		return nil, &schema.Error{Code: schema.CodeNoRoute, Message: fmt.Sprintf("node %s does not offer %s", x.cfg.NodeID, fun),
			Node: x.cfg.NodeID, Details: map[string]any{"fun": fun, "locs": []any{}}}
	}
	return f, nil
}

// start lets a step begin: its context is still live and it holds a run
// slot, taken here unless slot says the caller holds one already.
func (x *executor) start(ctx context.Context, slot bool) *schema.Error {
	if ctx.Err() != nil {
		// The deadline passed (or the caller went away) before the step
		// started: do not run it.
		if slot {
			x.release()
		}
		return x.stepCtxError(ctx)
	}
	if slot {
		return nil
	}
	return x.acquire(ctx)
}

// stepID names a step for logs, interceptors and the objects it stores:
// a peer's exec id as it came (req), or a request id and step name, joined
// only when needed.
type stepID struct{ req, step string }

func (s stepID) String() string {
	if s.step == "" {
		return s.req
	}
	return s.req + "/" + s.step
}

// invoke calls f with a recover boundary and normalizes its result. The
// references in args and kwargs are resolved first, and a result larger
// than the inline limit is stored by reference (see objects); fetched is
// the bytes fetched from the object bucket for the step.
func (x *executor) invoke(ctx context.Context, f *fn, args []any, kwargs map[string]any, id stepID) (v any, fetched int64, e *schema.Error) {
	var in *stepInputs
	defer func() {
		if p := recover(); p != nil {
			x.log.Error("function panicked", "request_id", id.String(), "fun", f.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			v, e = nil, &schema.Error{Code: schema.CodeFunctionPanic, Node: x.cfg.NodeID,
				Message: fmt.Sprintf("%s panicked: %v", f.name, p)}
		}
		in.close()
		fetched = in.bytes()
	}()
	maxPayload := int(x.nc.MaxPayload())
	if size, ok := codec.SizeWithinList(args, maxPayload); !ok {
		return nil, 0, x.tooLarge("the arguments of "+f.name, size)
	}
	if size, ok := codec.SizeWithinMap(kwargs, maxPayload); !ok {
		return nil, 0, x.tooLarge("the keyword arguments of "+f.name, size)
	}
	args, kwargs, in, e = x.objs.resolve(ctx, f, args, kwargs)
	if e != nil {
		return nil, 0, x.here(e)
	}
	if f.readsCtx || x.cfg.Hooks.Interceptor != nil {
		ctx = &keyCtx{Context: ctx, id: id} // for StepKey
	}
	var res any
	var err error
	if ic := x.cfg.Hooks.Interceptor; ic != nil {
		res, err = ic(ctx, Invocation{Fun: f.name, ID: id.String()}, args, kwargs, f.call)
	} else {
		res, err = f.call(ctx, args, kwargs)
	}
	if err != nil {
		if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return nil, 0, x.stepCtxError(ctx)
		}
		// An error object the function returned keeps its code; anything
		// else is FUNCTION_ERROR with its text, kept as the cause.
		return nil, 0, x.here(schema.AsCode(err, schema.CodeFunctionError))
	}
	v, e = x.objs.output(ctx, f.name, res, id)
	if e != nil {
		return nil, 0, x.here(e)
	}
	return v, 0, nil
}

// here returns e naming this node, when it names none.
func (x *executor) here(e *schema.Error) *schema.Error {
	if e.Node == "" {
		e = e.WithStep(e.Step, x.cfg.NodeID) // a copy: e may be shared
	}
	return e
}

// tooLarge is PAYLOAD_TOO_LARGE for a value of at least size bytes.
func (x *executor) tooLarge(what string, size int) *schema.Error {
	e := mesh.TooLarge(what, size, x.nc.MaxPayload())
	e.Message = fmt.Sprintf("%s exceed the NATS max payload of %d bytes", what, x.nc.MaxPayload())
	e.Node = x.cfg.NodeID
	return e
}

// stepCtxError is the error of a step whose context ended: NODE_UNAVAILABLE
// when this node is closing under it (another node may take the step),
// else TIMEOUT or CANCELLED.
func (x *executor) stepCtxError(ctx context.Context) *schema.Error {
	if x.ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &schema.Error{Code: schema.CodeNodeUnavailable, Node: x.cfg.NodeID,
			Message: fmt.Sprintf("node %s stopped while running the step", x.cfg.NodeID)}
	}
	return schema.Ended(ctx, ctx.Err(), "the step's deadline passed", "the step was cancelled")
}

// acquire takes one of MaxInflight run slots, waiting in a queue of at most
// MaxQueue steps; past that the step is OVERLOADED.
func (x *executor) acquire(ctx context.Context) *schema.Error {
	x.inflight.Add(1)
	select {
	case x.slots <- struct{}{}:
		x.queuedFor(0)
		return nil
	default:
	}
	if x.queued.Add(1) > int64(x.cfg.Limits.MaxQueue) {
		x.queued.Add(-1)
		x.inflight.Add(-1)
		return &schema.Error{Code: schema.CodeOverloaded, Node: x.cfg.NodeID,
			Message: fmt.Sprintf("node %s is running %d steps with %d queued, its limits %s and %s", x.cfg.NodeID, x.cfg.Limits.MaxInflight, x.cfg.Limits.MaxQueue,
				schema.LimitText("max_inflight", int64(x.cfg.Limits.MaxInflight)), schema.LimitText("max_queue", int64(x.cfg.Limits.MaxQueue))),
			Details: map[string]any{"limit": "max_queue", "max": int64(x.cfg.Limits.MaxQueue)}}
	}
	defer x.queued.Add(-1)
	waited := time.Now()
	select {
	case x.slots <- struct{}{}:
		x.queuedFor(time.Since(waited))
		return nil
	case <-ctx.Done():
		x.inflight.Add(-1)
		return x.stepCtxError(ctx)
	case <-x.quit:
		x.inflight.Add(-1)
		return schema.Errorf(schema.CodeShuttingDown, "node %s is closing", x.cfg.NodeID)
	}
}

// tryAcquire takes a run slot if one is free at once.
func (x *executor) tryAcquire() bool {
	x.inflight.Add(1)
	select {
	case x.slots <- struct{}{}:
		x.queuedFor(0)
		return true
	default:
		x.inflight.Add(-1)
		return false
	}
}

// stepDone counts a step that ended here, run for run (0 when it did not
// run), with the error it ended with, if any. fun is a registered
// function's name or unknownFun: a metric's labels stay bounded.
func (x *executor) stepDone(fun string, e *schema.Error, run time.Duration) {
	if e != nil {
		x.stepErrors.Add(1)
	}
	if r := x.cfg.Hooks.Recorder; r != nil {
		r.StepDone(fun, schema.Outcome(e), run)
	}
}

// queuedFor tells the Recorder how long a step waited for its run slot.
func (x *executor) queuedFor(d time.Duration) {
	if r := x.cfg.Hooks.Recorder; r != nil {
		r.StepQueued(d)
	}
}

// funLabel is f's name, or unknownFun when no function was found.
func funLabel(f *fn) string {
	if f == nil {
		return unknownFun
	}
	return f.name
}

// release frees a slot taken by acquire or tryAcquire.
func (x *executor) release() {
	<-x.slots
	x.inflight.Add(-1)
}

// readCancel decodes a message of a cancel subject with parse, or logs
// (rate-limited) why it is dropped and returns nil.
func readCancel[T any](x *env, m *nats.Msg, parse func(any) (*T, error)) *T {
	tree, err := mesh.DecodeReply(m)
	var c *T
	if err == nil {
		c, err = parse(tree)
	}
	if err != nil {
		if ok, held := x.logs.Allow("bad cancel"); ok {
			x.log.Warn("bad cancel dropped", "subject", m.Subject, "error", err, "dropped_since_last_log", held)
		}
		return nil
	}
	return c
}

// onCancel cancels a running exec when its planner gave up on it.
func (x *executor) onCancel(m *nats.Msg) {
	c := readCancel(x.env, m, schema.ParseCancel)
	if c == nil {
		return
	}
	if c.Cluster != x.cfg.Cluster {
		x.foreign.Add(1)
		if ok, held := x.logs.Allow("foreign cancel"); ok {
			x.log.Warn("cancel from another cluster dropped", "cluster", c.Cluster, "request_id", c.ID, "dropped_since_last_log", held)
		}
		return
	}
	if x.running.cancel(cmp.Or(c.Attempt, c.ID)) {
		x.log.Debug("step cancelled by its planner", "request_id", c.ID)
	}
}

// add registers cancel under id; remove takes the entry it returns away.
func (r *runningSet) add(id string, cancel context.CancelFunc) *runEntry {
	e := &runEntry{cancel: cancel}
	r.put(id, e)
	return e
}

// put registers e, which has cancel or step set, under id; remove takes it
// away.
func (r *runningSet) put(id string, e *runEntry) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[string]*runEntry)
	}
	e.next = r.m[id]
	r.m[id] = e
	r.mu.Unlock()
}

// remove takes e, registered under id by add, out of the set (if cancel
// has not taken the id's list already).
func (r *runningSet) remove(id string, e *runEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head := r.m[id]
	if head == e {
		if e.next == nil {
			delete(r.m, id)
		} else {
			r.m[id] = e.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == e {
			p.next = e.next
			return
		}
	}
}

// cancel cancels every step running under id and reports whether any was.
func (r *runningSet) cancel(id string) bool {
	r.mu.Lock()
	l := r.m[id]
	delete(r.m, id)
	r.mu.Unlock()
	for e := l; e != nil; e = e.next {
		if e.step != nil {
			e.step.cancel()
		} else {
			e.cancel()
		}
	}
	return l != nil
}
