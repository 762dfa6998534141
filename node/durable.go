package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// durables is a node's side of durable requests (docs/PROTOCOL.md §4.8):
// it records the requests it accepts in the cluster's durable store (package
// durable, on JetStream), runs them under a lease with each step's result
// recorded, takes over the requests whose planner died, and answers the
// status subject. Without JetStream a durable request is refused with
// STORE_UNAVAILABLE.
type durables struct {
	fr      *front
	store   atomic.Pointer[durable.Store]
	openErr atomic.Pointer[string] // why the store did not open, when JetStream is there
	known   <-chan struct{}        // closed when the node's JetStream probe ended
	holder  string                 // this process in a lease: "<node>/<instance>"
	lapsed  chan string            // keys whose lease lapsed, for the taker
	running atomic.Int64           // durable requests this node runs
	waits   *semaphore.Weighted    // status queries waiting, and cancel marks, in flight
	queries *semaphore.Weighted    // status queries being answered (maxStatusQueries)
}

// Durable request bounds and pacing.
const (
	// storeTimeout bounds one operation on the store: JetStream that
	// does not answer fails the operation, never hangs a request.
	storeTimeout = 5 * time.Second
	// durableProbeWait is how long a durable request waits for the
	// node's JetStream probe before it is refused: a server without
	// JetStream answers the probe at once.
	durableProbeWait = 1500 * time.Millisecond
	// sweepEvery is how often a node looks for requests nobody runs
	// (their lease gone, seen by no watcher: after a restart of the
	// whole cluster). A lapse seen by the watch is taken over at once.
	sweepEvery = 5 * time.Second
	// maxOrphans bounds the requests one sweep takes over.
	maxOrphans = 256
	// maxLapsed bounds the lapses waiting for the taker; more are left
	// to the next sweep.
	maxLapsed = 1024
	// maxStatusWaits bounds the status queries (and cancel marks) that
	// wait on the store at once; more are answered at once.
	maxStatusWaits = 1024
	// maxStatusQueries bounds the status queries a node answers at once;
	// more are answered OVERLOADED, unread.
	maxStatusQueries = 4096
)

func newDurables(fr *front, known <-chan struct{}, instance string) *durables {
	return &durables{fr: fr, known: known, holder: fr.cfg.NodeID + "/" + instance,
		lapsed: make(chan string, maxLapsed), waits: semaphore.NewWeighted(maxStatusWaits),
		queries: semaphore.NewWeighted(maxStatusQueries)}
}

// open opens the cluster's durable store once JetStream is known to be
// there, and starts the taker that takes over requests whose planner died.
func (d *durables) open(ctx context.Context, nc *nats.Conn) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	js, err := jetstream.New(nc)
	var store *durable.Store
	if err == nil {
		store, err = durable.Open(octx, js, durable.Options{Prefix: d.fr.cfg.Prefix, Cluster: d.fr.cfg.Cluster,
			Replicas: d.fr.cfg.Objects.Replicas})
	}
	if err != nil {
		msg := err.Error()
		d.openErr.Store(&msg)
		d.fr.log.Warn("durable requests unavailable: their JetStream buckets did not open", "error", err)
		return
	}
	d.store.Store(store)
	d.fr.log.Info("durable requests available", "lease_ttl", store.LeaseTTL())
	if !d.fr.goOwned(func() { d.take(store) }) {
		return
	}
}

// current returns the store, waiting for the node's JetStream probe as
// long as durableProbeWait and ctx allow; without it, the error to answer.
func (d *durables) current(ctx context.Context) (*durable.Store, *schema.Error) {
	if s := d.store.Load(); s != nil {
		return s, nil
	}
	t := time.NewTimer(durableProbeWait)
	defer t.Stop()
	select {
	case <-d.known:
	case <-t.C:
	case <-ctx.Done():
	}
	if s := d.store.Load(); s != nil {
		return s, nil
	}
	e := &schema.Error{Code: schema.CodeStoreUnavailable, Node: d.fr.cfg.NodeID}
	switch why := d.openErr.Load(); {
	case why != nil:
		e.Message = "durable requests need the cluster's JetStream buckets, which did not open: " + *why
	default:
		e.Message = "durable requests need JetStream, which this node's NATS account does not have: enable JetStream on the NATS servers (`mpreg server` has it on unless --no-jetstream; nats-server needs a jetstream block)"
	}
	return nil, e
}

// storeError is the error to answer for a failed operation on the store.
func (d *durables) storeError(err error, doing string) *schema.Error {
	e := schema.Wrap(schema.CodeInternal, err, "durable store: %s", doing)
	e.Node = d.fr.cfg.NodeID
	switch {
	case errors.Is(err, durable.ErrUnavailable):
		e.Code = schema.CodeStoreUnavailable
		e.Message = "JetStream did not answer while the planner tried to " + doing + ": " + err.Error()
	case errors.Is(err, durable.ErrNewer):
		e.Message = "a durable record was written by a newer version of MPREG than this node's (" + err.Error() + ")"
	case errors.Is(err, durable.ErrCorrupt):
		e.Message = "a durable record does not decode (" + err.Error() + ")"
	}
	return e
}

// requestSum is the identity of a durable request: what must be the same
// for a second request of the same id to be the same request. Its budget,
// trace and way of answering may differ.
func requestSum(req *schema.Request) (string, error) {
	id := schema.Request{Cmds: req.Cmds, Results: req.Results, OnError: req.OnError, RouteWaitMS: req.RouteWaitMS}
	b, err := codec.JSON.Encode(id)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// callerKey is the key of the caller of c in the store: durable.Key of it
// and the id names the request, so that callers see only their own.
func callerKey(c *rpcCall) string { return c.caller.Key() }

// durableCancelKey is cancelKey of a request in the store.
func durableCancelKey(caller, id string) string {
	if caller == "" {
		return id
	}
	return caller + "\x00" + id
}

// serveDurable accepts, runs and answers a durable request (serveRPC's
// plan and run): once per id, recorded before it is acknowledged.
func (fr *front) serveDurable(c *rpcCall, plan *planner.Plan) {
	d := fr.dur
	store, e := d.current(fr.ctx)
	if e != nil {
		d.refuse(c, e)
		return
	}
	rec, e := d.newRecord(c, len(plan.Steps))
	if e != nil {
		d.refuse(c, e)
		return
	}
	key := durable.Key(rec.Caller, rec.ID)
	ctx, cancel := context.WithTimeout(fr.ctx, storeTimeout)
	existing, final, err := store.Accept(ctx, rec)
	cancel()
	switch {
	case err != nil:
		d.refuse(c, d.storeError(err, "record the request"))
	case final != nil:
		d.answerFinal(c, rec, final)
	case existing != nil:
		d.answerRunning(c, store, key, rec, existing)
	case c.req.Submit:
		c.status = &schema.Status{ID: rec.ID, Status: schema.StatusAccepted, Steps: int64(rec.Steps)}
		if fr.log.Enabled(context.Background(), slog.LevelDebug) {
			fr.log.Debug("durable request accepted", "request_id", rec.ID, "steps", rec.Steps)
		}
		// Run on its own: the caller has its answer. A node closing now
		// leaves the request to the sweep of another.
		fr.goOwned(func() { d.runHere(store, key, rec, plan, true, nil) })
	default:
		resp, how := d.run(store, key, rec, plan, true, nil)
		d.answerRun(c, store, key, resp, how)
	}
}

// newRecord is the record of c's request, planned in steps steps.
func (d *durables) newRecord(c *rpcCall, steps int) (*durable.Record, *schema.Error) {
	req, lim := c.req, d.fr.cfg.Limits
	now := time.Now()
	deadline := schema.Deadline(now, req.TimeoutMS, req.DeadlineMS, lim.DefaultTimeout, lim.MaxDurableTimeout)
	if !deadline.After(now) {
		return nil, &schema.Error{Code: schema.CodeTimeout, Node: d.fr.cfg.NodeID,
			Message: "the request's deadline passed before it was planned", Details: map[string]any{"deadline_ms": req.DeadlineMS}}
	}
	ttl := lim.MaxResultTTL
	if req.ResultTTLMS > 0 {
		ttl = min(time.Duration(min(req.ResultTTLMS, lim.MaxResultTTL.Milliseconds()))*time.Millisecond, lim.MaxResultTTL)
	}
	ttl = max(ttl, time.Second)
	sum, err := requestSum(req)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidRequest, err, "the request does not encode")
	}
	body, err := codec.MsgPack.Encode(req)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidRequest, err, "the request does not encode")
	}
	rec := &durable.Record{ID: req.ID, Caller: callerKey(c), Sum: sum, Body: body, Steps: steps,
		CreatedMS: now.UnixMilli(), DeadlineMS: deadline.UnixMilli(), ResultTTLMS: ttl.Milliseconds()}
	if !req.Submit {
		// Whoever finishes the request answers the caller there, if it
		// still waits.
		rec.Reply, rec.ReplyCodec = c.m.Reply, c.reply.ContentType()
	}
	return rec, nil
}

// refuse answers c with e, nothing of it recorded: a Status for a
// submission, else a response.
func (d *durables) refuse(c *rpcCall, e *schema.Error) {
	if c.req.Submit {
		c.status = &schema.Status{ID: c.req.ID, Status: schema.StatusUnknown, Error: e}
		return
	}
	c.resp.Error = e
}

// sameRequest refuses c when the request recorded under its id is not
// the same request (requestSum); it reports whether it is.
func (d *durables) sameRequest(c *rpcCall, rec *durable.Record, sum string) bool {
	if sum == rec.Sum {
		return true
	}
	d.refuse(c, &schema.Error{Code: schema.CodeInvalidRequest, Node: d.fr.cfg.NodeID,
		Message: "a durable request with id " + schema.Clip(rec.ID) + " exists with other commands: an id names one request",
		Details: map[string]any{"id": rec.ID}})
	return false
}

// answerFinal answers a request whose id already finished: its outcome.
func (d *durables) answerFinal(c *rpcCall, rec *durable.Record, f *durable.Final) {
	if !d.sameRequest(c, rec, f.Sum) {
		return
	}
	st := d.finalStatus(f)
	if c.req.Submit {
		c.status = st
		return
	}
	*c.resp = statusResponse(st)
}

// answerRunning answers a request whose id is recorded and not finished:
// its status to a submission; else its outcome, once it ends within the
// caller's budget.
func (d *durables) answerRunning(c *rpcCall, store *durable.Store, key string, rec, existing *durable.Record) {
	if !d.sameRequest(c, existing, rec.Sum) {
		return
	}
	if c.req.Submit {
		c.status = d.liveStatus(store, key, existing)
		return
	}
	d.answerRun(c, store, key, nil, endElsewhere)
}

// durableEnd says how a run of a durable request on this node ended.
type durableEnd int

const (
	// endFinished: it ended here, its outcome recorded (or, when the
	// store failed, answered without being recorded).
	endFinished durableEnd = iota
	// endElsewhere: another planner holds (or took) its lease and runs it.
	endElsewhere
	// endStopped: this node is closing; another takes the request over.
	endStopped
)

// answerRun sets c's answer from a run of its durable request: the
// response, the outcome another planner records, or none when this node
// closes (the planner that takes the request over answers).
func (d *durables) answerRun(c *rpcCall, store *durable.Store, key string, resp *schema.Response, how durableEnd) {
	switch how {
	case endFinished:
		*c.resp = *resp
	case endStopped:
		c.silent = true
	case endElsewhere:
		deadline := schema.Deadline(c.start, c.req.TimeoutMS, c.req.DeadlineMS, d.fr.cfg.Limits.DefaultTimeout, d.fr.cfg.Limits.MaxDurableTimeout)
		ctx, cancel := context.WithDeadline(d.fr.ctx, deadline)
		defer cancel()
		f, err := store.WaitFinal(ctx, key)
		switch {
		case err == nil:
			*c.resp = statusResponse(d.finalStatus(f))
		case d.fr.ctx.Err() != nil:
			c.silent = true
		case ctx.Err() != nil:
			c.resp.Error = &schema.Error{Code: schema.CodeTimeout, Node: d.fr.cfg.NodeID,
				Message: "the request's budget ran out while another planner runs it; it goes on: fetch its outcome by id (mpreg get)",
				Details: map[string]any{"id": c.req.ID}}
		default:
			c.resp.Error = d.storeError(err, "wait for the request's outcome")
		}
	}
	c.resp.ID = c.req.ID
}

// runHere runs a durable request on this node (a submission, or one taken
// over) and answers its caller, if one waits on its reply subject.
func (d *durables) runHere(store *durable.Store, key string, rec *durable.Record, plan *planner.Plan, fresh bool, bad *schema.Error) {
	resp, how := d.run(store, key, rec, plan, fresh, bad)
	if how != endFinished || rec.Reply == "" {
		return
	}
	c, ok := codec.ByType(rec.ReplyCodec)
	if !ok {
		c = codec.JSON
	}
	if err := d.fr.answer(&nats.Msg{Reply: rec.Reply}, c, "", resp, false); err != nil {
		d.fr.replyFailed("rpc", rec.ID, err)
	}
}

// run runs a durable request under its lease: steps recorded before do
// not run again, each step's result that another step reads is recorded
// before that step starts, and the outcome is recorded for the request's
// result TTL. A request that cannot be planned (bad) ends with that
// error. A fresh request, accepted here a moment ago, has nothing
// recorded to read. Once the outcome is recorded, what the request left
// in the store and then its lease go on their own, while the caller gets
// its answer.
func (d *durables) run(store *durable.Store, key string, rec *durable.Record, plan *planner.Plan, fresh bool, bad *schema.Error) (*schema.Response, durableEnd) {
	d.running.Add(1)
	defer d.running.Add(-1)
	lease, resp, how := d.acquire(store, key, rec)
	if lease == nil {
		return resp, how
	}
	resp, how, settled := d.runLeased(store, key, rec, plan, fresh, bad, lease)
	if !settled || !d.fr.goOwned(func() { d.tidy(store, key, lease) }) {
		d.release(lease)
	}
	return resp, how
}

// acquire takes the request's lease; without it, how the run ends.
func (d *durables) acquire(store *durable.Store, key string, rec *durable.Record) (*durable.Lease, *schema.Response, durableEnd) {
	fr := d.fr
	ctx, cancel := context.WithTimeout(fr.ctx, storeTimeout)
	defer cancel()
	lease, err := store.Acquire(ctx, key, d.holder)
	switch {
	case err == nil:
		return lease, nil, endFinished
	case errors.Is(err, durable.ErrLeased):
		return nil, nil, endElsewhere
	case fr.ctx.Err() != nil:
		return nil, nil, endStopped
	}
	return nil, &schema.Response{ID: rec.ID, Results: map[string]any{}, Error: d.storeError(err, "take the request's lease")}, endFinished
}

// runLeased is run, the lease held; settled says that the outcome is
// recorded.
func (d *durables) runLeased(store *durable.Store, key string, rec *durable.Record, plan *planner.Plan, fresh bool, bad *schema.Error,
	lease *durable.Lease) (_ *schema.Response, _ durableEnd, settled bool) {
	fr := d.fr
	ctx, stop := context.WithDeadline(fr.ctx, time.UnixMilli(rec.DeadlineMS))
	defer stop()
	go func() { // owned: ends with ctx, which runLeased's return ends
		select {
		case <-lease.Lost():
			stop()
		case <-ctx.Done():
		}
	}()
	j, e := &journal{d: d, store: store, key: key}, bad
	if !fresh {
		if f := d.finished(ctx, store, key); f != nil {
			// Its planner recorded the outcome and died before it
			// tidied up.
			return statusResponsePtr(d.finalStatus(f)), endFinished, true
		}
		if j, e = d.journal(ctx, store, key); e == nil {
			e = bad
		}
	}
	var o planner.Outcome
	var objs objSet
	if e == nil {
		ck := durableCancelKey(rec.Caller, rec.ID)
		defer fr.planned.remove(ck, fr.planned.add(ck, stop))
		plan.Journal = j
		o = fr.runner.Execute(&objCtx{Context: ctx, set: &objs}, plan)
	} else {
		o.Err = e
	}
	select {
	case <-lease.Lost():
		return nil, endElsewhere, false
	default:
	}
	if fr.ctx.Err() != nil {
		return nil, endStopped, false
	}
	resp := &schema.Response{ID: rec.ID, Results: o.Results, Errors: o.Errors, Error: o.Err, Trace: o.Trace, TraceTruncated: o.TraceTruncated}
	if resp.Results == nil {
		resp.Results = map[string]any{}
	}
	defer fr.deleter.release(rec.ID, &objs, resp.Results)
	resp, settled = d.finish(store, key, rec, resp, j.done()+sinksDone(plan, resp))
	return resp, endFinished, settled
}

// finished returns the outcome recorded for key, if there is one.
func (d *durables) finished(ctx context.Context, store *durable.Store, key string) *durable.Final {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	f, err := store.Final(ctx, key)
	if err != nil {
		return nil // none, or unreadable: the run finds out what
	}
	return f
}

// sinksDone counts the steps of plan that no step reads and that
// succeeded: their results are recorded with the outcome, not before.
func sinksDone(plan *planner.Plan, resp *schema.Response) int {
	if plan == nil {
		return 0
	}
	n := 0
	for _, s := range plan.Steps {
		if _, ok := resp.Results[s.Name]; ok && len(s.Dependents) == 0 {
			n++
		}
	}
	return n
}

// tidy removes what a finished request left in the store, then marks its
// lease done (it lapses unreported): in this order, so that no node takes
// over a request whose record is still there. Should the clean fail, the
// record stays until a node's sweep finds it with its outcome and cleans
// it (Store.Orphans); the lease is marked done all the same, so that no
// takeover starts on it.
func (d *durables) tidy(store *durable.Store, key string, lease *durable.Lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.fr.ctx), storeTimeout)
	defer cancel()
	if err := store.Clean(ctx, key); err != nil {
		if ok, held := d.fr.logs.Allow("durable clean"); ok {
			d.fr.log.Warn("durable request finished; what it left stays until a sweep", "key", key, "error", err, "failed_since_last_log", held)
		}
	}
	if err := lease.Done(ctx); err != nil {
		d.release(lease)
	}
}

// release gives up a lease, so that another node need not wait for it to
// lapse (a node closing), or stops renewing one of a finished request.
func (d *durables) release(l *durable.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.Release(ctx) // it lapses anyway
}

// journal reads what an earlier run of the request left: its cancel, and
// the steps it recorded.
func (d *durables) journal(ctx context.Context, store *durable.Store, key string) (*journal, *schema.Error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	j := &journal{d: d, store: store, key: key}
	cancelled, err := store.Cancelled(sctx, key)
	if err != nil {
		return j, d.storeError(err, "read the request's cancel")
	}
	if cancelled {
		return j, schema.Errorf(schema.CodeCancelled, "the request was cancelled")
	}
	steps, err := store.Steps(sctx, key)
	if err != nil {
		return j, d.storeError(err, "read the request's recorded steps")
	}
	j.recorded = make(map[string]any, len(steps))
	for name, b := range steps {
		v, err := codec.MsgPack.Decode(b)
		if err != nil {
			return j, d.storeError(errors.Join(durable.ErrCorrupt, err), "read the result recorded for step "+schema.Clip(name))
		}
		j.recorded[name] = v
	}
	j.count.Store(int64(len(steps)))
	return j, nil
}

// finish records the outcome of a request that ended here and returns the
// response to answer: the one recorded first, should another planner have
// finished it too. settled says that an outcome is recorded.
func (d *durables) finish(store *durable.Store, key string, rec *durable.Record, resp *schema.Response, done int) (_ *schema.Response, settled bool) {
	fr := d.fr
	if resp.Error != nil && resp.Error.Code == schema.CodeStoreUnavailable {
		// Nothing more can be recorded: the request goes on, from its
		// recorded steps, once JetStream answers a planner again.
		return resp, false
	}
	status := durable.StatusDone
	if e := resp.Error; e != nil {
		status = durable.StatusFailed
		if e.Code == schema.CodeCancelled {
			status = durable.StatusCancelled
		}
	}
	body, err := codec.MsgPack.Encode(resp)
	if err != nil {
		resp = &schema.Response{ID: rec.ID, Results: map[string]any{}, Error: schema.Wrap(schema.CodeInternal, err, "the outcome does not encode")}
		status = durable.StatusFailed
		body, _ = codec.MsgPack.Encode(resp)
	}
	f := &durable.Final{ID: rec.ID, Caller: rec.Caller, Sum: rec.Sum, Status: status, Response: body, Planner: fr.cfg.NodeID,
		Steps: rec.Steps, StepsDone: done, FinishedMS: time.Now().UnixMilli()}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(fr.ctx), storeTimeout)
	defer cancel()
	got, err := store.Settle(ctx, key, f, time.Duration(rec.ResultTTLMS)*time.Millisecond)
	switch {
	case errors.Is(err, durable.ErrFinished) && got != nil:
		return statusResponsePtr(d.finalStatus(got)), true
	case err != nil:
		fr.log.Warn("durable request outcome not recorded", "request_id", rec.ID, "error", err)
		if resp.Error == nil {
			resp.Error = d.storeError(err, "record the request's outcome")
		}
		return resp, false
	}
	if fr.log.Enabled(context.Background(), slog.LevelDebug) {
		fr.log.Debug("durable request finished", "request_id", rec.ID, "status", status, "steps_done", done)
	}
	return resp, true
}

// finalStatus is the Status of a finished request.
func (d *durables) finalStatus(f *durable.Final) *schema.Status {
	st := &schema.Status{ID: f.ID, Status: f.Status, Planner: f.Planner, Steps: int64(f.Steps), StepsDone: int64(f.StepsDone)}
	resp, _, err := codec.ReadSized(codec.MsgPack, f.Response, codec.MaxDecoded, schema.ReadResponse)
	if err != nil {
		st.Status = schema.StatusFailed
		st.Error = d.storeError(errors.Join(durable.ErrCorrupt, err), "read the request's outcome")
		return st
	}
	st.Result, st.Errors, st.Error = resp.Results, resp.Errors, resp.Error
	if st.Result == nil {
		st.Result = map[string]any{}
	}
	return st
}

// statusResponse is the response of a request that ended with st.
func statusResponse(st *schema.Status) schema.Response {
	r := schema.Response{ID: st.ID, Results: st.Result, Errors: st.Errors, Error: st.Error}
	if r.Results == nil {
		r.Results = map[string]any{}
	}
	return r
}

func statusResponsePtr(st *schema.Status) *schema.Response {
	r := statusResponse(st)
	return &r
}

// planner of a lease holder "<node>/<instance>" is the node.
func plannerOf(holder string) string {
	node, _, _ := strings.Cut(holder, "/")
	return node
}

// journal is a durable request's planner.Journal: the steps an earlier run
// recorded, and the store that records this run's.
type journal struct {
	d        *durables
	store    *durable.Store
	key      string
	recorded map[string]any // read only once the run starts
	count    atomic.Int64   // steps recorded, by any run
}

// Recorded implements planner.Journal.
func (j *journal) Recorded(step string) (any, bool) {
	v, ok := j.recorded[step]
	return v, ok
}

// Record implements planner.Journal: the step's result is stored before
// a step that reads it starts; a result recorded first by another planner
// wins.
func (j *journal) Record(ctx context.Context, step string, v any) (any, error) {
	b, err := codec.MsgPack.Encode(v)
	if err != nil {
		return nil, schema.Wrap(schema.CodeFunctionError, err, "the step's result does not encode")
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	got, err := j.store.RecordStep(ctx, j.key, step, b)
	if err != nil {
		return nil, j.d.storeError(err, "record the result of step "+schema.Clip(step))
	}
	j.count.Add(1)
	if string(got) == string(b) {
		return v, nil
	}
	return codec.MsgPack.Decode(got)
}

// done is how many steps have a recorded result.
func (j *journal) done() int {
	if j == nil {
		return 0
	}
	return int(j.count.Load())
}
