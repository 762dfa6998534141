package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// onHelloRequest answers gossip.sync and node.<id>.info with the node's
// hello, in the codec the requester accepts. A draining node answers with
// its goodbye: a peer that missed the goodbye learns that the node is
// leaving, and a peer that only reads hellos drops the reply.
func (n *Node) onHelloRequest(m *nats.Msg) {
	_, reply, _ := codec.Negotiate("", bus.Header(m, codec.HeaderAccept))
	var body any = n.hello()
	if n.draining.Load() {
		body = n.goodbye()
	}
	if err := mesh.Respond(n.nc, m, reply, body, nil); err != nil {
		n.replyFailed("hello", "", err)
	}
}

// replyFailed logs a reply that could not be sent (the connection is down,
// or the request named a reply subject that is too long), at most once a
// second for each kind of message.
func (n *Node) replyFailed(kind, id string, err error) {
	if ok, held := n.logs.Allow(kind + " reply failed"); ok {
		n.log.Warn(kind+" reply failed", "request_id", id, "error", err, "failed_since_last_log", held)
	}
}

// onRPC takes a whole request off the subscription and plans it on an owned
// goroutine: the subscription's goroutine never waits on user code.
func (n *Node) onRPC(m *nats.Msg) {
	if n.planning.Add(1) > int64(n.cfg.MaxRequests) {
		n.planning.Add(-1)
		n.overloaded(m, fmt.Sprintf("node %s is planning %d requests, its limit", n.cfg.NodeID, n.cfg.MaxRequests), "max_requests", int64(n.cfg.MaxRequests))
		return
	}
	n.work.add()
	if !n.goOwned(func() { defer n.work.done(); n.serveRPC(m) }) {
		n.work.done()
		n.planning.Add(-1)
	}
}

// overloaded answers an rpc request OVERLOADED without reading its body
// (so with no id): the caller may send it again, and NATS' queue group will
// likely pick another node.
func (n *Node) overloaded(m *nats.Msg, msg, limit string, maxValue int64) {
	n.requests.Add(1)
	n.requestErrors.Add(1)
	_, reply, _ := codec.Negotiate(bus.Header(m, codec.HeaderContentType), bus.Header(m, codec.HeaderAccept))
	resp := &schema.Response{ID: "", Results: map[string]any{}, Error: &schema.Error{
		Code: schema.CodeOverloaded, Node: n.cfg.NodeID, Message: msg, Details: map[string]any{"limit": limit, "max": maxValue}}}
	if err := mesh.Respond(n.nc, m, reply, resp, nil); err != nil {
		n.replyFailed("rpc", "", err)
	}
}

// decodeRatio and decodeSlack bound the memory a request body may decode
// to before anything is known of it: a body of b bytes reserves
// b*decodeRatio+decodeSlack (at most codec.MaxDecoded) of MaxPlanningBytes
// until it is decoded, and may not decode to more.
const (
	decodeRatio = 128
	decodeSlack = 64 << 10
)

// requestID reads "id" from an undecodable request when it can, so that
// error replies still echo it.
func requestID(tree any) string {
	if mm, ok := tree.(map[string]any); ok {
		if id, ok := mm["id"].(string); ok {
			return id
		}
	}
	return ""
}

// serveRPC plans and answers one request; onRPC counted it in n.planning
// and serveRPC takes it off before replying.
func (n *Node) serveRPC(m *nats.Msg) {
	start := time.Now()
	// The body's memory, decoded, comes out of MaxPlanningBytes: many
	// bodies that decode to a lot at once are refused, not decoded.
	reserve := min(codec.MaxDecoded, int64(len(m.Data))*decodeRatio+decodeSlack)
	if !n.memory.TryAcquire(reserve) {
		n.planning.Add(-1)
		n.overloaded(m, fmt.Sprintf("node %s holds as many requests in memory as max_planning_bytes allows", n.cfg.NodeID), "max_planning_bytes", n.cfg.MaxPlanningBytes)
		return
	}
	n.requests.Add(1)
	tree, size, reply, derr := mesh.DecodeSized(m, reserve)
	if derr != nil {
		size = 0
	}
	n.memory.Release(reserve - size)
	defer n.memory.Release(size)
	resp := &schema.Response{ID: requestID(tree)}
	defer func() {
		if resp.Error != nil {
			n.requestErrors.Add(1)
		}
		if resp.Results == nil {
			resp.Results = map[string]any{}
		}
		// The request is done: free its place before the caller can send
		// the next one on seeing the reply.
		n.planning.Add(-1)
		err := mesh.Respond(n.nc, m, reply, resp, func(problem *schema.Error) any {
			// The results cannot be sent: drop them. A step's error says
			// more than the size does, so it is kept.
			e := resp.Error
			if e == nil {
				e = problem
			} else {
				c := *e
				e = &c
			}
			return &schema.Response{ID: resp.ID, Results: map[string]any{}, Error: e}
		})
		if err != nil {
			n.replyFailed("rpc", resp.ID, err)
		}
		n.log.Debug("rpc served", "request_id", resp.ID, "duration", time.Since(start), "error", resp.Error)
	}()
	if derr != nil {
		resp.Error = derr
		return
	}
	req, err := schema.ParseRequest(tree)
	if err != nil {
		resp.Error = schema.AsError(err)
		return
	}
	if req.ID == "" {
		req.ID = nuid.Next()
	}
	resp.ID = req.ID
	plan, err := planner.New(req, n.cfg.Limits)
	if err != nil {
		resp.Error = schema.AsError(err)
		return
	}
	timeout := n.cfg.DefaultTimeout
	if req.TimeoutMS > 0 {
		// Cap in milliseconds first: a huge timeout_ms must not overflow.
		timeout = time.Duration(min(req.TimeoutMS, n.cfg.MaxTimeout.Milliseconds())) * time.Millisecond
	}
	timeout = min(timeout, n.cfg.MaxTimeout)
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	if req.DeadlineMS > 0 {
		// The caller's own deadline (its clock, ours: hosts are assumed
		// to keep time within a few ms, by NTP): a request read late, by
		// a planner that was stalled or far behind, runs nothing after
		// the caller stopped waiting.
		dl := time.UnixMilli(req.DeadlineMS)
		if !dl.After(time.Now()) {
			resp.Error = &schema.Error{Code: schema.CodeTimeout, Node: n.cfg.NodeID,
				Message: "the request's deadline passed before it was planned",
				Details: map[string]any{"deadline_ms": req.DeadlineMS}}
			return
		}
		var cancelDL context.CancelFunc
		ctx, cancelDL = context.WithDeadline(ctx, dl)
		defer cancelDL()
	}
	defer n.planned.add(req.ID, cancel)()
	if n.unplanned.has(req.ID) {
		// Its cancel came before the request reached this point.
		resp.Error = schema.Errorf(schema.CodeCancelled, "the request was cancelled")
		return
	}
	defer n.ackPlanner(m, req.ID)()
	resp.Results, resp.Error = n.runner.Run(ctx, plan)
}

// ackPlanner tells a caller that asked (schema.HeaderPlannerAck) that this
// node plans request id, once it has planned it for PlannerAckAfter. The
// returned function cancels an ack not yet sent.
func (n *Node) ackPlanner(m *nats.Msg, id string) (stop func()) {
	subject := bus.Header(m, schema.HeaderPlannerAck)
	if subject == "" {
		return func() {}
	}
	if err := n.subj.Reply(subject); err != nil {
		if ok, held := n.logs.Allow("bad ack subject"); ok {
			n.log.Warn("planner ack not sent", "request_id", id, "error", err, "dropped_since_last_log", held)
		}
		return func() {}
	}
	ack := &schema.PlannerAck{Cluster: n.cfg.Cluster, ID: id, Planner: n.cfg.NodeID, Incarnation: n.incarnation, Instance: n.instance}
	if n.cfg.PlannerAckAfter < 0 {
		n.publish(subject, ack)
		return func() {}
	}
	t := time.AfterFunc(n.cfg.PlannerAckAfter, func() {
		if !n.closing.Load() {
			n.publish(subject, ack)
		}
	})
	return func() { t.Stop() }
}

// route is the node's planner.Router (see mesh.Follower.Route).
func (n *Node) route(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
	if f := n.follower.Load(); f != nil {
		return f.Route(ctx, fun, locs, exclude)
	}
	return n.table.Pick(fun, locs, exclude)
}

// exec is the node's planner.Executor: local steps run in-process, others go
// to the chosen node's exec subject.
func (n *Node) exec(ctx context.Context, node string, c *planner.Call) (any, error) {
	if node != n.cfg.NodeID {
		return n.execer.Exec(ctx, node, c)
	}
	// Local steps count in n.inflight (the table's SelfLoad), not in the
	// table's outstanding counter.
	v, err := n.runLocal(ctx, c.Fun, c.Args, c.Kwargs, c.ID())
	if err != nil {
		return nil, err
	}
	return v, nil
}

// inlineDecodeMax is the largest exec body decoded on the subscription's
// goroutine; larger ones are decoded on a worker, so that one big body does
// not hold up the messages behind it.
const inlineDecodeMax = 64 << 10

// onExec answers one step for this node. A body of up to inlineDecodeMax
// bytes is decoded on the subscription's goroutine; a function registered
// Inline runs there too when a run slot is free at once (saving a goroutine
// hand-off per call), and any other runs on an owned worker.
func (n *Node) onExec(m *nats.Msg) {
	n.work.add()
	if n.closing.Load() {
		n.work.done() // Close may have seen the node idle already
		return
	}
	if len(m.Data) > inlineDecodeMax {
		if !n.goOwned(func() {
			defer n.work.done()
			if s := n.prepareExec(m); s != nil {
				n.runExec(s, false)
			}
		}) {
			n.work.done()
		}
		return
	}
	s := n.prepareExec(m)
	if s == nil {
		n.work.done()
		return
	}
	if s.f.inline && n.tryAcquire() {
		n.runExec(s, true)
		n.work.done()
		return
	}
	if !n.goOwned(func() { defer n.work.done(); n.runExec(s, false) }) {
		n.work.done()
		n.stepErrors.Add(1)
		n.sendExec(s, &schema.ExecReply{Error: schema.Errorf(schema.CodeShuttingDown, "node %s is closing", n.cfg.NodeID)})
	}
}

// execStep is one exec message on its way through the node.
type execStep struct {
	m     *nats.Msg
	reply codec.Codec
	req   *schema.ExecRequest
	f     *fn
	once  sync.Once
}

// prepareExec decodes and checks an exec message. It answers (or drops) the
// ones that cannot run and returns nil for them.
func (n *Node) prepareExec(m *nats.Msg) *execStep {
	tree, reply, derr := mesh.Decode(m)
	s := &execStep{m: m, reply: reply}
	if derr != nil {
		n.sendExec(s, &schema.ExecReply{Error: derr})
		return nil
	}
	req, err := schema.ParseExecRequest(tree)
	if err != nil {
		n.sendExec(s, &schema.ExecReply{Error: schema.AsError(err)})
		return nil
	}
	if req.Cluster != n.cfg.Cluster {
		n.foreign.Add(1)
		if ok, held := n.logs.Allow("foreign exec"); ok {
			n.log.Warn("exec from another cluster dropped", "cluster", req.Cluster, "request_id", req.ID, "dropped_since_last_log", held)
		}
		return nil // dropped: no reply
	}
	n.steps.Add(1)
	if n.draining.Load() {
		// New work from peers goes elsewhere; steps of requests this node
		// already took still run here.
		n.stepErrors.Add(1)
		n.sendExec(s, &schema.ExecReply{Error: schema.Errorf(schema.CodeShuttingDown, "node %s is draining", n.cfg.NodeID)})
		return nil
	}
	f, e := n.lookup(req.Fun)
	if e != nil {
		n.sendExec(s, &schema.ExecReply{Error: e})
		return nil
	}
	s.req, s.f = req, f
	return s
}

// sendExec answers s once: with the function's outcome, or with TIMEOUT or
// CANCELLED when the step's context ends first.
func (n *Node) sendExec(s *execStep, rep *schema.ExecReply) {
	s.once.Do(func() {
		err := mesh.Respond(n.nc, s.m, s.reply, rep.Encodable(), func(problem *schema.Error) any {
			if rep.Error != nil { // an error object that is too big itself
				c := *rep.Error
				return schema.ExecError{Error: &c}
			}
			problem.Node = n.cfg.NodeID
			return schema.ExecError{Error: problem}
		})
		if err != nil {
			id := ""
			if s.req != nil {
				id = s.req.ID
			}
			n.replyFailed("exec", id, err)
		}
	})
}

// runExec runs a prepared step and answers it. slot says whether the
// caller already holds a run slot (see tryAcquire).
func (n *Node) runExec(s *execStep, slot bool) {
	req := s.req
	// No step runs longer than a request may: an exec without deadline_ms,
	// or with one further off, gets the node's maximum budget.
	dl := time.Now().Add(n.cfg.MaxTimeout)
	if req.DeadlineMS > 0 && req.DeadlineMS < dl.UnixMilli() {
		dl = time.UnixMilli(req.DeadlineMS)
	}
	ctx, cancel := context.WithDeadline(n.ctx, dl)
	defer cancel()
	if key := cmp.Or(req.Attempt, req.ID); key != "" {
		defer n.running.add(key, cancel)()
	}
	if e := n.start(ctx, slot); e != nil {
		n.sendExec(s, &schema.ExecReply{Error: e})
		return
	}
	// The function runs on this goroutine; if it outlives its context the
	// caller is answered at once and the late result is dropped.
	late := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(late)
		n.sendExec(s, &schema.ExecReply{Error: n.stepCtxError(ctx)})
	})
	v, e := n.invoke(ctx, s.f, req.Args, req.Kwargs, req.ID)
	if !stop() {
		<-late // the timeout reply is out; nothing outlives this call
	}
	n.release()
	if e == nil && ctx.Err() != nil {
		// A result that came after the step's deadline (or its cancel) is
		// not one: the planner may already have given the step to another
		// node.
		e = n.stepCtxError(ctx)
	}
	if e != nil {
		n.stepErrors.Add(1)
		n.sendExec(s, &schema.ExecReply{Error: e})
		return
	}
	n.sendExec(s, &schema.ExecReply{Result: v})
}

// runLocal runs a registered function under ctx, on an owned goroutine so
// that the caller gets TIMEOUT or CANCELLED when ctx ends even if the
// function ignores ctx.
func (n *Node) runLocal(ctx context.Context, fun string, args []any, kwargs map[string]any, id string) (any, *schema.Error) {
	f, e := n.admit(ctx, fun)
	if e != nil {
		return nil, e
	}
	if f.inline {
		// Quick by contract: no goroutine to guard its deadline.
		v, e := n.invoke(ctx, f, args, kwargs, id)
		n.release()
		if e != nil {
			n.stepErrors.Add(1)
		}
		return v, e
	}
	type result struct {
		v   any
		err *schema.Error
	}
	ch := make(chan result, 1)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.work.add()
	started := n.goOwned(func() {
		defer n.work.done()
		v, err := n.invoke(hctx, f, args, kwargs, id) // recovers panics
		n.release()                                   // before the caller can route its next step
		ch <- result{v, err}
	})
	if !started {
		n.work.done()
		n.release()
		n.stepErrors.Add(1)
		return nil, schema.Errorf(schema.CodeShuttingDown, "node %s is closing", n.cfg.NodeID)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			n.stepErrors.Add(1)
		}
		return r.v, r.err
	case <-ctx.Done():
		// Let ctx's end reach the handler before the deferred cancel does,
		// so that it sees DeadlineExceeded at a deadline, not Canceled.
		<-hctx.Done()
		n.stepErrors.Add(1)
		return nil, n.stepCtxError(ctx)
	}
}

// admit counts a step and lets it run: the function exists, the step's
// context is still live, and it holds a run slot (see acquire). The caller
// calls release when the step ends.
func (n *Node) admit(ctx context.Context, fun string) (*fn, *schema.Error) {
	n.steps.Add(1)
	f, e := n.lookup(fun)
	if e != nil {
		return nil, e
	}
	if e := n.start(ctx, false); e != nil {
		return nil, e
	}
	return f, nil
}

// lookup finds a registered function; a missing one is NO_ROUTE (a step
// error, counted).
func (n *Node) lookup(fun string) (*fn, *schema.Error) {
	f, ok := n.reg.get(fun)
	if !ok {
		n.stepErrors.Add(1)
		return nil, &schema.Error{Code: schema.CodeNoRoute, Message: fmt.Sprintf("node %s does not offer %s", n.cfg.NodeID, fun),
			Node: n.cfg.NodeID, Details: map[string]any{"fun": fun, "locs": []any{}}}
	}
	return f, nil
}

// start lets a step begin: its context is still live and it holds a run
// slot, taken here unless slot says the caller holds one already.
func (n *Node) start(ctx context.Context, slot bool) *schema.Error {
	if ctx.Err() != nil {
		// The deadline passed (or the caller went away) before the step
		// started: do not run it.
		if slot {
			n.release()
		}
		n.stepErrors.Add(1)
		return n.stepCtxError(ctx)
	}
	if slot {
		return nil
	}
	if e := n.acquire(ctx); e != nil {
		n.stepErrors.Add(1)
		return e
	}
	return nil
}

// invoke calls f with a recover boundary and normalizes its result.
func (n *Node) invoke(ctx context.Context, f *fn, args []any, kwargs map[string]any, id string) (v any, e *schema.Error) {
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("function panicked", "request_id", id, "fun", f.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			v, e = nil, &schema.Error{Code: schema.CodeFunctionPanic, Node: n.cfg.NodeID,
				Message: fmt.Sprintf("%s panicked: %v", f.name, p)}
		}
	}()
	maxPayload := int(n.nc.MaxPayload())
	if size, ok := codec.SizeWithin(args, maxPayload); !ok {
		return nil, n.tooLarge("the arguments of "+f.name, size)
	}
	if size, ok := codec.SizeWithin(kwargs, maxPayload); !ok {
		return nil, n.tooLarge("the keyword arguments of "+f.name, size)
	}
	res, err := f.call(ctx, args, kwargs)
	if err != nil {
		if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return nil, n.stepCtxError(ctx)
		}
		e := callError(err)
		if e.Node == "" {
			e = &schema.Error{Code: e.Code, Message: e.Message, Step: e.Step, Node: n.cfg.NodeID, Details: e.Details}
		}
		return nil, e
	}
	// A result built from shared parts can stand for far more than it
	// holds: bound it before anything walks it in full.
	if size, ok := codec.SizeWithin(res, maxPayload); !ok {
		return nil, n.tooLarge("the result of "+f.name, size)
	}
	out, err := codec.Normalize(res)
	if err != nil {
		return nil, &schema.Error{Code: schema.CodeFunctionError, Node: n.cfg.NodeID,
			Message: fmt.Sprintf("%s returned a value that does not encode: %v", f.name, err)}
	}
	return out, nil
}

// tooLarge is PAYLOAD_TOO_LARGE for a value of at least size bytes.
func (n *Node) tooLarge(what string, size int) *schema.Error {
	e := mesh.TooLarge(what, size, n.nc.MaxPayload())
	e.Message = fmt.Sprintf("%s exceed the NATS max payload of %d bytes", what, n.nc.MaxPayload())
	e.Node = n.cfg.NodeID
	return e
}

// stepCtxError is the error of a step whose context ended: NODE_UNAVAILABLE
// when this node is closing under it (another node may take the step),
// else TIMEOUT or CANCELLED.
func (n *Node) stepCtxError(ctx context.Context) *schema.Error {
	if n.ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &schema.Error{Code: schema.CodeNodeUnavailable, Node: n.cfg.NodeID,
			Message: fmt.Sprintf("node %s stopped while running the step", n.cfg.NodeID)}
	}
	return ctxError(ctx)
}

// ctxError maps a finished context to TIMEOUT or CANCELLED.
func ctxError(ctx context.Context) *schema.Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return schema.Errorf(schema.CodeTimeout, "the step's deadline passed")
	}
	return schema.Errorf(schema.CodeCancelled, "the step was cancelled")
}

// acquire takes one of MaxInflight run slots, waiting in a queue of at most
// MaxQueue steps; past that the step is OVERLOADED.
func (n *Node) acquire(ctx context.Context) *schema.Error {
	n.inflight.Add(1)
	select {
	case n.slots <- struct{}{}:
		return nil
	default:
	}
	if n.queued.Add(1) > int64(n.cfg.MaxQueue) {
		n.queued.Add(-1)
		n.inflight.Add(-1)
		return &schema.Error{Code: schema.CodeOverloaded, Node: n.cfg.NodeID,
			Message: fmt.Sprintf("node %s is running %d steps with %d queued, its limits", n.cfg.NodeID, n.cfg.MaxInflight, n.cfg.MaxQueue),
			Details: map[string]any{"limit": "max_queue", "max": int64(n.cfg.MaxQueue)}}
	}
	defer n.queued.Add(-1)
	select {
	case n.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		n.inflight.Add(-1)
		return n.stepCtxError(ctx)
	case <-n.quit:
		n.inflight.Add(-1)
		return schema.Errorf(schema.CodeShuttingDown, "node %s is closing", n.cfg.NodeID)
	}
}

// tryAcquire takes a run slot if one is free at once.
func (n *Node) tryAcquire() bool {
	n.inflight.Add(1)
	select {
	case n.slots <- struct{}{}:
		return true
	default:
		n.inflight.Add(-1)
		return false
	}
}

// release frees a slot taken by acquire or tryAcquire.
func (n *Node) release() {
	<-n.slots
	n.inflight.Add(-1)
}

// readCancel decodes a message of a cancel subject with parse, or logs
// (rate-limited) why it is dropped and returns nil.
func readCancel[T any](n *Node, m *nats.Msg, parse func(any) (*T, error)) *T {
	tree, err := mesh.DecodeReply(m)
	var c *T
	if err == nil {
		c, err = parse(tree)
	}
	if err != nil {
		if ok, held := n.logs.Allow("bad cancel"); ok {
			n.log.Warn("bad cancel dropped", "subject", m.Subject, "error", err, "dropped_since_last_log", held)
		}
		return nil
	}
	return c
}

// onCancel cancels a running exec when its planner gave up on it.
func (n *Node) onCancel(m *nats.Msg) {
	c := readCancel(n, m, schema.ParseCancel)
	if c == nil {
		return
	}
	if c.Cluster != n.cfg.Cluster {
		n.foreign.Add(1)
		if ok, held := n.logs.Allow("foreign cancel"); ok {
			n.log.Warn("cancel from another cluster dropped", "cluster", c.Cluster, "request_id", c.ID, "dropped_since_last_log", held)
		}
		return
	}
	if n.running.cancel(cmp.Or(c.Attempt, c.ID)) {
		n.log.Debug("step cancelled by its planner", "request_id", c.ID)
	}
}

// onCancelRequest stops the rpc request a caller cancelled, if this node
// plans it: its context ends, so queued steps never start and running ones,
// here or on other nodes, have their context cancelled.
func (n *Node) onCancelRequest(m *nats.Msg) {
	c := readCancel(n, m, schema.ParseCancelRequest)
	if c == nil {
		return
	}
	if n.planned.cancel(c.ID) {
		n.log.Info("request cancelled by its caller", "request_id", c.ID)
		return
	}
	// Perhaps it is on its way from the rpc subscription to its planning.
	n.unplanned.add(c.ID)
}

// recentIDs remembers the ids of recent cancels of requests this node did
// not plan, for a few seconds and at most recentMax of them.
type recentIDs struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

const (
	recentFor = 5 * time.Second
	recentMax = 1024
)

func (r *recentIDs) add(id string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[string]time.Time)
	}
	if len(r.ids) >= recentMax {
		for k, at := range r.ids {
			if now.Sub(at) > recentFor || len(r.ids) >= recentMax {
				delete(r.ids, k)
			}
		}
	}
	r.ids[id] = now
}

func (r *recentIDs) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.ids[id]
	return ok && time.Since(at) <= recentFor
}

// runningSet maps exec ids to the cancel funcs of the steps running here.
type runningSet struct {
	mu sync.Mutex
	m  map[string][]*context.CancelFunc
}

// add registers cancel under id and returns the func that removes it.
func (r *runningSet) add(id string, cancel context.CancelFunc) func() {
	p := &cancel
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[string][]*context.CancelFunc)
	}
	r.m[id] = append(r.m[id], p)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		l := slices.DeleteFunc(r.m[id], func(q *context.CancelFunc) bool { return q == p })
		if len(l) == 0 {
			delete(r.m, id)
		} else {
			r.m[id] = l
		}
		r.mu.Unlock()
	}
}

// cancel cancels every step running under id and reports whether any was.
func (r *runningSet) cancel(id string) bool {
	r.mu.Lock()
	l := r.m[id]
	delete(r.m, id)
	r.mu.Unlock()
	for _, c := range l {
		(*c)()
	}
	return len(l) > 0
}
