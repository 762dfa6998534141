package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/semaphore"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// front is the rpc side of a node: it takes whole requests off the rpc
// subject, plans and runs them (the planner's runner, with this node's
// executor for local steps and the step sender for remote ones), bounds
// their memory, answers them, and stops them when their caller cancels.
type front struct {
	*env
	*executor
	ann      *mesh.Announcer
	table    *membership.Table
	follower *atomic.Pointer[mesh.Follower]
	sender   *mesh.Execer // sends steps to other nodes, and delegates runs of them
	runner   *planner.Runner
	deleter  *deleter            // deletes the objects of the requests planned here
	dur      *durables           // durable requests: recorded, taken over, status
	memory   *semaphore.Weighted // MaxPlanningBytes
	policy   atomic.Pointer[authz.Policy]

	planState
	replies replyBatch // replies sent while other requests are planned

	stats frontStats
}

// planState is what a node knows of the rpc requests it plans.
type planState struct {
	planning  atomic.Int64 // rpc requests being planned here
	planned   runningSet   // rpc requests planned here, by request id
	unplanned recentIDs    // cancels of requests this node has not planned (yet)
}

// frontStats count what the rpc side of a node served.
type frontStats struct {
	requests, requestErrors atomic.Int64
	cancelsRefused          atomic.Int64 // cancels whose sender could not be read
	// For $SRV.STATS, per endpoint.
	rpc, nodeRPC, extRPC endpointStats
}

// decodeRatio and decodeSlack bound the memory a request body may decode
// to before anything is known of it: a body of b bytes reserves
// b*decodeRatio+decodeSlack (at most codec.MaxDecoded) of MaxPlanningBytes
// until it is decoded, and may not decode to more.
const (
	decodeRatio = 128
	decodeSlack = 64 << 10
)

// onRPC takes a whole request off the subscription and plans it on an owned
// goroutine: the subscription's goroutine never waits on user code.
func (fr *front) onRPC(m *nats.Msg) {
	if fr.planning.Add(1) > int64(fr.cfg.Limits.MaxRequests) {
		fr.planning.Add(-1)
		fr.overloaded(m, fmt.Sprintf("node %s is planning %d requests, the limit %s", fr.cfg.NodeID, fr.cfg.Limits.MaxRequests, schema.LimitText("max_requests", int64(fr.cfg.Limits.MaxRequests))), "max_requests", int64(fr.cfg.Limits.MaxRequests))
		return
	}
	fr.work.add()
	if !fr.goOwned(func() { defer fr.work.done(); fr.serveRPC(m) }) {
		fr.work.done()
		fr.planning.Add(-1)
	}
}

// overloaded answers an rpc request OVERLOADED without reading its body
// (so with no id): the caller may send it again, and NATS' queue group will
// likely pick another node.
func (fr *front) overloaded(m *nats.Msg, msg, limit string, maxValue int64) {
	fr.stats.requests.Add(1)
	_, reply, _ := mesh.Codecs(m, fr.nodeRPCSubject(m.Subject))
	resp := &schema.Response{ID: "", Results: map[string]any{}, Error: &schema.Error{
		Code: schema.CodeOverloaded, Node: fr.cfg.NodeID, Message: msg,
		Details: map[string]any{"limit": limit, "max": maxValue, "unread": true}}}
	fr.requestDone(m.Subject, 0, resp.Error)
	if err := mesh.Respond(fr.nc, m, reply, resp, nil); err != nil {
		fr.replyFailed("rpc", "", err)
	}
}

// requestDone counts a request this node answered, after d, with error e
// (nil on success): in Stats, the Recorder and $SRV.STATS, under the
// endpoint of the subject it came on.
func (fr *front) requestDone(subject string, d time.Duration, e *schema.Error) {
	if e != nil {
		fr.stats.requestErrors.Add(1)
	}
	if r := fr.cfg.Hooks.Recorder; r != nil {
		r.RequestDone(schema.Outcome(e), d)
	}
	switch subject {
	case fr.subj.RPC():
		fr.stats.rpc.done(d, e)
	case fr.subj.ExtRPC():
		fr.stats.extRPC.done(d, e)
	default:
		fr.stats.nodeRPC.done(d, e)
	}
}

// nodeRPCSubject reports whether a request came on the node's own rpc
// subject (onRPC takes rpc, ext.rpc and that one): only there is a body
// that names no codec read by its first byte (hello.bare, docs/PROTOCOL.md
// §3); on rpc and ext.rpc it is JSON.
func (fr *front) nodeRPCSubject(subject string) bool {
	return subject != fr.subj.RPC() && subject != fr.subj.ExtRPC()
}

// rpcCall is one rpc request on its way through the node, from its
// decoding to its reply.
type rpcCall struct {
	m      *nats.Msg
	start  time.Time   // received
	reply  codec.Codec // what the caller reads
	size   int64       // decoded memory it holds of MaxPlanningBytes
	req    *schema.Request
	caller authz.Caller
	resp   *schema.Response // &respv
	st     *stream          // when the caller asked for a stream
	objs   objSet           // the objects its steps stored
	octx   objCtx           // its context while it runs, carrying objs
	respv  schema.Response  // in the same allocation as the call
	// status, when set, is the answer instead of resp: a durable
	// request's submission (docs/PROTOCOL.md §4.8).
	status *schema.Status
	// silent: no answer, as the node closes while it runs a durable
	// request, which the node that takes it over answers.
	silent bool
}

// serveRPC answers one request, stage by stage: decode → admit (the
// caller's identity and rights) → plan → run → reply. A stage that fails
// sets the response's error and the request goes straight to its reply.
// onRPC counted the request in fr.planning; the reply takes it off.
func (fr *front) serveRPC(m *nats.Msg) {
	c := fr.decodeRPC(m)
	if c == nil {
		return // answered OVERLOADED, unread
	}
	defer fr.memory.Release(c.size)
	defer fr.releaseObjects(c) // after the reply
	defer fr.replyRPC(c)
	if c.resp.Error != nil {
		return
	}
	if c.resp.Error = fr.admitRPC(c); c.resp.Error != nil {
		return
	}
	if c.req.DryRun {
		c.resp.Plan, c.resp.Problems = fr.dryRun(c.req, c.caller)
		c.resp.Warnings = planner.Warnings(c.req)
		return
	}
	plan, err := planner.New(c.req, fr.cfg.Limits.planner())
	switch {
	case err != nil && c.req.Submit:
		c.status = &schema.Status{ID: c.req.ID, Status: schema.StatusUnknown, Error: schema.AsError(err)}
	case err != nil:
		c.resp.Error = schema.AsError(err)
	case c.req.Durable:
		fr.serveDurable(c, plan)
	default:
		fr.runRPC(c, plan)
	}
}

// decodeRPC reads a request within its share of MaxPlanningBytes. When
// that memory is not free it answers OVERLOADED, unread, and returns nil;
// otherwise the call's response holds the error of a request that does not
// decode or parse.
func (fr *front) decodeRPC(m *nats.Msg) *rpcCall {
	start := time.Now()
	// The body's memory, decoded, comes out of MaxPlanningBytes: many
	// bodies that decode to a lot at once are refused, not decoded.
	reserve := min(codec.MaxDecoded, int64(len(m.Data))*decodeRatio+decodeSlack)
	if !fr.memory.TryAcquire(reserve) {
		fr.planning.Add(-1)
		fr.overloaded(m, fmt.Sprintf("node %s holds as many requests in memory as the limit %s allows", fr.cfg.NodeID, schema.LimitText("max_planning_bytes", fr.cfg.Limits.MaxPlanningBytes)), "max_planning_bytes", fr.cfg.Limits.MaxPlanningBytes)
		return nil
	}
	fr.stats.requests.Add(1)
	req, size, reply, err := mesh.ReadSized(m, reserve, fr.nodeRPCSubject(m.Subject), schema.ReadRequest)
	if err != nil {
		size = 0
	}
	fr.memory.Release(reserve - size)
	c := &rpcCall{m: m, start: start, reply: reply, size: size}
	c.resp = &c.respv
	if err != nil {
		if req != nil { // it decoded: the reply echoes the id it gave
			c.resp.ID = req.ID
		}
		c.resp.Error = schema.AsError(err)
		return c
	}
	c.req = req
	if c.req.ID == "" {
		c.req.ID = nuid.Next()
	}
	c.resp.ID = c.req.ID
	return c
}

// admitRPC reads who sent the request and checks that it may run every
// function it names (authorize).
func (fr *front) admitRPC(c *rpcCall) *schema.Error {
	caller, err := fr.authorize(c.m, c.req)
	c.caller = caller
	return schema.AsError(err)
}

// runRPC runs a planned request within its budget (schema.Deadline), where
// its caller's cancel reaches it, and puts its outcome in the response.
func (fr *front) runRPC(c *rpcCall, plan *planner.Plan) {
	req := c.req
	now := time.Now()
	deadline := schema.Deadline(now, req.TimeoutMS, req.DeadlineMS, fr.cfg.Limits.DefaultTimeout, fr.cfg.Limits.MaxTimeout)
	if !deadline.After(now) {
		// Only the caller's deadline_ms can have passed: a request read
		// late, by a planner that was stalled or far behind, runs nothing
		// after the caller stopped waiting.
		c.resp.Error = &schema.Error{Code: schema.CodeTimeout, Node: fr.cfg.NodeID,
			Message: "the request's deadline passed before it was planned",
			Details: map[string]any{"deadline_ms": req.DeadlineMS}}
		return
	}
	ctx, cancel := context.WithDeadline(fr.ctx, deadline) // one timer for both
	defer cancel()
	c.octx = objCtx{Context: ctx, set: &c.objs}
	ctx = &c.octx
	key := cancelKey(c.caller, req.ID)
	defer fr.planned.remove(key, fr.planned.add(key, cancel))
	if fr.unplanned.has(key) {
		// Its cancel came before the request reached this point.
		c.resp.Error = schema.Errorf(schema.CodeCancelled, "the request was cancelled")
		return
	}
	if !c.caller.Stamped {
		// A caller in another account names its ack subject in its own
		// account, which this node's publish would not reach: the ack
		// would land in the nodes' account instead. It gets none.
		defer fr.ackPlanner(c.m, req.ID)()
	}
	plan.Received = c.start
	if c.st = fr.openStream(c.m, c.reply, req, len(plan.Steps)); c.st != nil && req.Progress {
		plan.OnAttempt = c.st.step
	}
	o := fr.runner.Execute(ctx, plan)
	c.resp.Results, c.resp.Errors, c.resp.Error, c.resp.Trace, c.resp.TraceTruncated = o.Results, o.Errors, o.Err, o.Trace, o.TraceTruncated
}

// releaseObjects schedules the deletes of the objects the request's steps
// stored, once it has been answered (see deleter).
func (fr *front) releaseObjects(c *rpcCall) {
	fr.deleter.release(c.resp.ID, &c.objs, c.resp.Results)
}

// replyRPC answers the request (the last message of its stream, if it has
// one), counts and logs it, and frees its place among the requests being
// planned before the caller can send the next one on seeing the reply.
func (fr *front) replyRPC(c *rpcCall) {
	resp := c.resp
	took := time.Since(c.start)
	if c.status != nil {
		resp.Error = c.status.Error // counted and logged as a response's
	}
	fr.requestDone(c.m.Subject, took, resp.Error)
	if resp.Results == nil {
		resp.Results = map[string]any{}
	}
	fr.planning.Add(-1)
	event := ""
	if c.st != nil {
		c.st.close()
		event = schema.EventResult
	}
	split := c.req != nil && c.req.SplitResults // the caller takes the results in parts
	switch {
	case c.silent:
	case c.status != nil:
		if err := mesh.RespondEvent(fr.nc, c.m, c.reply, event, c.status, nil); err != nil {
			fr.replyFailed("rpc", resp.ID, err)
		}
	default:
		if err := fr.answer(c.m, c.reply, event, resp, split); err != nil {
			fr.replyFailed("rpc", resp.ID, err)
		}
	}

	if e := resp.Error; e != nil && e.Code != schema.CodePermissionDenied {
		// By the planner, whichever node the failing step ran on
		// (refusals are logged by authorize). A caller can make
		// requests fail at will: at most one line a second per code.
		if ok, held := fr.logs.Allow("request failed " + string(e.Code)); ok {
			fr.log.Info("request failed", "request_id", resp.ID, "code", e.Code, "step", e.Step, "step_node", e.Node,
				"duration", took, "error", e.Message, "dropped_since_last_log", held)
		}
	} else if fr.log.Enabled(context.Background(), slog.LevelDebug) {
		// Guarded: the arguments would be boxed for every request.
		fr.log.Debug("rpc served", "request_id", resp.ID, "duration", took)
	}
}

// authorize reads who sent a request (what NATS stamped on it, see package
// authz) and checks, before anything of it runs, that the caller may run
// every function it names: this is the one place where a request is
// allowed or refused.
func (fr *front) authorize(m *nats.Msg, req *schema.Request) (authz.Caller, error) {
	caller, err := fr.caller(m)
	if err != nil {
		fr.denied(req.ID, caller, "", err)
		e := schema.Wrap(schema.CodePermissionDenied, err, "the caller's identity cannot be read")
		if errors.Is(err, authz.ErrImportedLocal) {
			e.Message = strings.TrimPrefix(err.Error(), "authz: ")
		}
		if caller.Stamped {
			e.Details = map[string]any{"account": caller.Account, "user": caller.User}
		}
		return caller, e
	}
	p := fr.policy.Load()
	if p == nil {
		if caller.Stamped {
			if ok, held := fr.logs.Allow("no policy"); ok {
				fr.log.Warn("a request from another NATS account is planned with no authorization policy: every function is allowed to it (give every planning node --authz)",
					"request_id", req.ID, "account", caller.Account, "user", caller.User, "dropped_since_last_log", held)
			}
		}
		return caller, nil
	}
	funs := make([]string, len(req.Cmds))
	for i, c := range req.Cmds {
		funs[i] = c.Fun
	}
	if err := p.Check(caller, funs); err != nil {
		fun, _ := schema.AsError(err).Details.(map[string]any)["fun"].(string)
		fr.denied(req.ID, caller, fun, err)
		return caller, err
	}
	return caller, nil
}

// caller reads who sent m (authz.Read): a message on an ext subject came
// through an import and must carry NATS's stamp.
func (fr *front) caller(m *nats.Msg) (authz.Caller, error) {
	entry := authz.EntryLocal
	if m.Subject == fr.subj.ExtRPC() || m.Subject == fr.subj.ExtCancel() || m.Subject == fr.subj.ExtStatus() {
		entry = authz.EntryImport
	}
	return authz.Read(authz.Msg{Header: m.Header, HeaderBytes: bus.HeaderBytes(m), Reply: m.Reply, Entry: entry})
}

// denied logs a refused request, at most once a second: a caller can send
// many.
func (fr *front) denied(id string, c authz.Caller, fun string, err error) {
	if ok, held := fr.logs.Allow("permission denied"); ok {
		fr.log.Info("request refused", "request_id", id, "account", c.Account, "user", c.User, "fun", fun,
			"error", err, "dropped_since_last_log", held)
	}
}

// cancelKey is the key of a planned request in fr.planned and of an early
// cancel in fr.unplanned: a cancel stops only requests of its own caller.
func cancelKey(c authz.Caller, id string) string {
	if !c.Stamped {
		return id
	}
	return c.Key() + "\x00" + id
}

// dryRun plans req and explains it (planner.Plan.Explain); nothing runs.
// A request that does not plan has its planning error as its problem. A
// caller from another NATS account, who may not read the membership, is
// told whether each step is routable, not where it would run.
func (fr *front) dryRun(req *schema.Request, caller authz.Caller) ([]schema.PlanStep, []*schema.Error) {
	plan, err := planner.New(req, fr.cfg.Limits.planner())
	if err != nil {
		return []schema.PlanStep{}, []*schema.Error{withoutNode(schema.AsError(err), caller)}
	}
	ctx, cancel := context.WithTimeout(fr.ctx, time.Second)
	defer cancel()
	steps, problems := plan.Explain(ctx, planner.RouterFunc(fr.route), fr.table.Eligible)
	if caller.Stamped {
		for i := range steps {
			steps[i].Candidates, steps[i].Node = []string{}, nil
		}
		for i, p := range problems {
			problems[i] = withoutNode(p, caller)
		}
	}
	return steps, problems
}

// withoutNode is e without its node for a caller from another NATS
// account (a copy: e may be shared). The dry run's problems (NO_ROUTE,
// INVALID_REQUEST) name no node elsewhere.
func withoutNode(e *schema.Error, caller authz.Caller) *schema.Error {
	if !caller.Stamped || e.Node == "" {
		return e
	}
	c := *e
	c.Node = ""
	return &c
}

// ackPlanner tells a caller that asked (schema.HeaderPlannerAck) that this
// node plans request id, once it has planned it for PlannerAckAfter. The
// returned function cancels an ack not yet sent.
func (fr *front) ackPlanner(m *nats.Msg, id string) (stop func()) {
	subject := bus.Header(m, schema.HeaderPlannerAck)
	if subject == "" {
		return func() {}
	}
	if err := fr.subj.Reply(subject); err != nil {
		if ok, held := fr.logs.Allow("bad ack subject"); ok {
			fr.log.Warn("planner ack not sent", "request_id", id, "error", err, "dropped_since_last_log", held)
		}
		return func() {}
	}
	ack := &schema.PlannerAck{Cluster: fr.cfg.Cluster, ID: id, Planner: fr.cfg.NodeID, Incarnation: fr.ann.Incarnation(), Instance: fr.ann.Instance()}
	if fr.cfg.PlannerAckAfter < 0 {
		fr.publish(subject, ack)
		return func() {}
	}
	t := time.AfterFunc(fr.cfg.PlannerAckAfter, func() {
		if !fr.closing.Load() {
			fr.publish(subject, ack)
		}
	})
	return func() { t.Stop() }
}

// route is the node's planner.Router (see mesh.Follower.Route).
func (fr *front) route(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
	if f := fr.follower.Load(); f != nil {
		return f.Route(ctx, fun, locs, exclude)
	}
	return fr.table.Pick(fun, locs, exclude)
}

// routeNear is route preferring near, the node that holds the step's
// inputs passed by reference (membership.Table.PickNear).
func (fr *front) routeNear(ctx context.Context, fun string, locs, exclude []string, near string) (string, bool) {
	if node, ok := fr.table.PickNear(fun, locs, exclude, near); ok {
		return node, true
	}
	return fr.route(ctx, fun, locs, exclude)
}

// router is the node's planner.NearRouter.
type router struct{ fr *front }

func (r router) Route(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
	return r.fr.route(ctx, fun, locs, exclude)
}

func (r router) RouteNear(ctx context.Context, fun string, locs, exclude []string, near string) (string, bool) {
	return r.fr.routeNear(ctx, fun, locs, exclude, near)
}

// onCancelRequest stops the rpc request a caller cancelled, if this node
// plans it: its context ends, so queued steps never start and running ones,
// here or on other nodes, have their context cancelled.
func (fr *front) onCancelRequest(m *nats.Msg) {
	c := readCancel(fr.env, m, schema.ParseCancelRequest)
	if c == nil {
		return
	}
	caller, err := fr.caller(m)
	if err != nil {
		// Ignored: whose request it would stop cannot be told.
		fr.stats.cancelsRefused.Add(1)
		fr.denied(c.ID, caller, "", err)
		return
	}
	key := cancelKey(caller, c.ID)
	fr.dur.markCancel(caller.Key(), c.ID)
	if fr.planned.cancel(key) {
		fr.log.Info("request cancelled by its caller", "request_id", c.ID)
		fr.answerCancel(m, c.ID)
		return
	}
	// Perhaps it is on its way from the rpc subscription to its planning.
	fr.unplanned.add(key)
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

func newFront(e *env, x *executor, ann *mesh.Announcer, table *membership.Table, follower *atomic.Pointer[mesh.Follower]) *front {
	cfg := e.cfg
	fr := &front{env: e, executor: x, ann: ann, table: table, follower: follower,
		memory: semaphore.NewWeighted(cfg.Limits.MaxPlanningBytes)}
	fr.policy.Store(cfg.Authz)
	fr.sender = &mesh.Execer{Conn: e.nc, Subjects: e.subj, Cluster: cfg.Cluster, Table: table, Logger: e.log,
		Flow: mesh.NewFlow(cfg.Limits.MaxBytesInFlight), MaxPartBytes: cfg.Limits.MaxResultBytes}
	fr.runner = &planner.Runner{
		Router:   router{fr},
		Local:    recordObjects{planner.ExecutorFunc(x.runStepHere)},
		Executor: recordObjects{fr.sender},
		Observer: observer(cfg),
		Logger:   e.log,
		Size: func(v any) int64 {
			size, _ := codec.SizeWithin(v, int(cfg.Limits.MaxResultBytes)+1)
			return int64(size)
		},
		MaxResultBytes: cfg.Limits.MaxResultBytes,
		Memory:         fr.memory,
		Retries:        planner.Retries{Policy: table.Policy},
		RouteWait:      planner.RouteWait{Watch: table.Watch, Max: cfg.Limits.MaxWaiting},
		Self:           cfg.NodeID,
		NoLocality:     cfg.NoLocality,
	}
	if !cfg.NoDelegate {
		fr.runner.Delegator = recordDelegated{fr.sender}
	}
	fr.deleter = newDeleter(e, x.objs)
	return fr
}

// observer is the planner's Observer: the configured one, and the
// Recorder's count of steps sent to other nodes.
func observer(cfg Config) planner.Observer {
	rec, obs := cfg.Hooks.Recorder, cfg.Hooks.Observer
	if rec == nil {
		return obs
	}
	return planner.ObserverFunc(func(ev planner.StepEvent) {
		if ev.Node != "" && ev.Node != cfg.NodeID {
			rec.RemoteStepDone(ev.Node, schema.Outcome(ev.Err))
		}
		if obs != nil {
			obs.StepDone(ev)
		}
	})
}

// start subscribes the inbox that steps sent to other nodes are answered on.
func (fr *front) start() error {
	req, err := mesh.NewRequester(fr.nc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	fr.sender.Requester = req
	return nil
}

// close stops the inbox of steps sent to other nodes.
func (fr *front) close() {
	if r := fr.sender.Requester; r != nil {
		r.Close()
	}
}
