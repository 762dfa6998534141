// Package client is the Go API for calling an MPREG cluster: one function
// with Call, a whole dependency graph with Run, and the live nodes with
// Peers. Durable requests (docs/PROTOCOL.md §4.8), which survive their
// planner, are handed over with Submit and read with Status and Get.
//
// A Client follows the cluster's gossip (unless Config.NoFollow) and sends a
// single call straight to a chosen node's exec subject: one NATS round trip.
// Run, and calls when no eligible node is known, go through the cluster's
// rpc subject, where a node plans and routes the request.
//
// Values too big for a message pass by reference through the cluster's
// JetStream object bucket (docs/PROTOCOL.md §4.7), on the client's own
// connection: an argument over Config.Objects.InlineMax is uploaded and deleted
// when the call returns, and a result passed by reference comes back as
// its value, fetched, checked against its size and SHA-256, decoded, and
// then deleted — or, with WithKeepRefs or Config.Objects.KeepRefs, as the
// objref.Ref it is. Maps that look like references ({"$obj": …}) or
// escapes ({"$lit": …}) are escaped going out and unescaped coming back,
// so that they round-trip as the literals they are.
package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client: closed")

// ErrInvalidConfig wraps every configuration error of Connect.
var ErrInvalidConfig = errors.New("client: invalid config")

// Config configures a Client. Zero fields take the defaults named in their
// comments.
type Config struct {
	// Conn, when set, is used instead of dialing; the Client does not close it.
	Conn *nats.Conn
	// Dial is the connection the client opens when Conn is nil (see
	// bus.ConnConfig): Servers (default nats://127.0.0.1:4222), Auth (the
	// identity shown to NATS and the TLS settings), InboxPrefix (e.g.
	// "_INBOX_alice" for a NATS user allowed to subscribe only
	// "_INBOX_alice.>"; with Conn the inboxes come from that connection's
	// options), Name, reconnect settings and extra nats.go Options. Its
	// Logger defaults to Logger.
	Dial bus.ConnConfig
	// FailFast dials once: when no NATS server answers the first connect,
	// Connect returns NODE_UNAVAILABLE ("cannot reach NATS at …") at once
	// instead of trying again until ctx ends. A connection that was up
	// still reconnects. Ignored when Conn is set.
	FailFast bool
	// Cluster is the cluster id. Default "default".
	Cluster string
	// Prefix is the subject prefix. Default "mpreg".
	Prefix string
	// Codec encodes requests. Default codec.MsgPack.
	Codec codec.Codec
	// Timeout is a call's budget when its context has no deadline and no
	// WithTimeout is given. Default 30 s.
	Timeout time.Duration
	// NoFollow turns off the membership view: every call goes through the
	// rpc subject. Right for one-shot tools; long-lived clients should follow.
	NoFollow bool
	// SyncQuiet is how long the first sync waits after the last reply.
	// Default 200 ms.
	SyncQuiet time.Duration
	// DeadAfter is how long a silent node stays routable in the client's
	// view; match it to the nodes' (3 heartbeat intervals). Default 3 s.
	DeadAfter time.Duration
	// PlannerCheck is how often the client asks whether the node planning
	// one of its requests (rpc) is still there, once that node has said it
	// plans it. When the planner does not answer (no responders) for
	// DeadAfter, or a new process answers under its id, the request ends
	// with NODE_UNAVAILABLE instead of a TIMEOUT at its budget. Default 1 s.
	PlannerCheck time.Duration
	// MaxBytesInFlight bounds the bytes of the calls and requests in
	// flight (requests and the replies expected to them, see mesh.Flow);
	// more wait. Default DefaultMaxBytesInFlight.
	MaxBytesInFlight int64
	// Logger. Default: discard.
	Logger *slog.Logger
	// Objects is the client's side of values by reference (docs/PROTOCOL.md
	// §4.7): when arguments are uploaded, how big a value may be, and
	// whether results stay references.
	Objects ObjectsConfig
}

// ObjectsConfig is the client's side of values by reference
// (docs/PROTOCOL.md §4.7), through the cluster's JetStream object bucket.
// Its zero value has the defaults.
type ObjectsConfig struct {
	// InlineMax: an argument (a top-level element of args, or a keyword
	// argument's value) larger than this, measured as docs/PROTOCOL.md
	// §6.1 measures values, is uploaded to the cluster's object bucket and
	// passed by reference (§4.7), when the cluster's NATS account has
	// JetStream; the client deletes its uploads when the call returns.
	// Zero or less: DefaultInlineMax (256 KiB). Never more than half the
	// NATS max payload.
	InlineMax int
	// MaxObjectBytes bounds a value the client uploads or fetches by
	// reference: a larger one is PAYLOAD_TOO_LARGE with details.limit
	// "max_object_bytes". Default DefaultMaxObjectBytes (1 GiB).
	MaxObjectBytes int64
	// KeepRefs returns the references among results as they are, as
	// objref.Ref values, instead of fetching the objects they name (see
	// WithKeepRefs). Kept objects are not deleted by the client: the
	// cluster removes them later (after its result TTL, or the bucket's
	// max age).
	KeepRefs bool
}

// DefaultMaxBytesInFlight is Config.MaxBytesInFlight's default: half of a
// NATS server's default max_pending, the bytes it holds for one connection
// before it drops it as a slow consumer.
const DefaultMaxBytesInFlight = 32 << 20

// Client calls an MPREG cluster. It is safe for concurrent use.
type Client struct {
	cfg      Config
	nc       *nats.Conn
	ownConn  bool
	subj     bus.Subjects
	table    *membership.Table
	follower *mesh.Follower
	runner   *planner.Runner
	req      *mesh.Requester
	flow     *mesh.Flow // direct calls' and requests' bytes in flight
	watch    *plannerWatch
	objs     *objects
	closed   atomic.Bool
	idPrefix string        // unique per client
	idSeq    atomic.Uint64 // request ids are idPrefix + idSeq
}

// nextID returns a request id unique to this client, without the global
// lock of a NUID per call.
func (c *Client) nextID() string {
	return c.idPrefix + strconv.FormatUint(c.idSeq.Add(1), 36)
}

// Connect dials NATS (unless cfg.Conn is set) and, unless cfg.NoFollow,
// learns the cluster's nodes before returning.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Cluster == "" {
		cfg.Cluster = bus.DefaultCluster
	}
	if err := schema.CheckID(cfg.Cluster); err != nil {
		return nil, fmt.Errorf("%w: cluster: %w", ErrInvalidConfig, err)
	}
	if err := bus.CheckPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Codec == nil {
		cfg.Codec = codec.MsgPack
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, nc: cfg.Conn, subj: bus.NewSubjects(cfg.Prefix, cfg.Cluster), idPrefix: nuid.Next() + "-"}
	if c.nc == nil {
		dc := cfg.Dial
		if dc.Logger == nil {
			dc.Logger = cfg.Logger
		}
		if cfg.FailFast {
			dc.Options = append([]nats.Option{nats.RetryOnFailedConnect(false)}, dc.Options...)
		}
		nc, err := bus.Connect(ctx, dc)
		if err != nil {
			return nil, connectError(cfg.Dial.Servers, err)
		}
		c.nc, c.ownConn = nc, true
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * time.Second
		c.cfg.DeadAfter = cfg.DeadAfter
	}
	if cfg.PlannerCheck <= 0 {
		c.cfg.PlannerCheck = time.Second
	}
	req, err := mesh.NewRequester(c.nc)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	c.req = req
	c.flow = mesh.NewFlow(cmp.Or(cfg.MaxBytesInFlight, DefaultMaxBytesInFlight))
	c.objs = newObjects(c)
	c.table = membership.New(membership.Config{DeadAfter: cfg.DeadAfter, ForgetAfter: 10 * cfg.DeadAfter})
	var watchTable *membership.Table // a following client watches planners in its view
	if !cfg.NoFollow {
		watchTable = c.table
	}
	w, err := newPlannerWatch(c.nc, c.subj, watchTable, c.cfg.PlannerCheck, c.cfg.DeadAfter, cfg.Logger)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.watch = w
	c.runner = &planner.Runner{
		Router: planner.RouterFunc(c.route),
		Executor: &mesh.Execer{Conn: c.nc, Subjects: c.subj, Cluster: cfg.Cluster, Table: c.table, Logger: cfg.Logger,
			Requester: c.req, Flow: c.flow},
		Logger:  cfg.Logger,
		Retries: planner.Retries{Policy: c.table.Policy}, // direct calls follow the functions' retry policies too
	}
	if !cfg.NoFollow {
		f, err := mesh.Follow(ctx, mesh.FollowConfig{
			Conn: c.nc, Subjects: c.subj, Cluster: cfg.Cluster, Table: c.table,
			SyncQuiet: cfg.SyncQuiet, PruneInterval: cfg.DeadAfter / 3, Logger: cfg.Logger,
			LearnServers: true,
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: %w", err)
		}
		c.follower = f
	}
	return c, nil
}

// route is the client's planner.Router (see mesh.Follower.Route).
func (c *Client) route(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
	if c.follower != nil {
		return c.follower.Route(ctx, fun, locs, exclude)
	}
	return c.table.Pick(fun, locs, exclude)
}

// Conn returns the client's NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Table returns the client's membership view (empty with NoFollow).
func (c *Client) Table() *membership.Table { return c.table }

// Close stops following and closes the connection if the client dialed it.
// It is idempotent.
func (c *Client) Close() {
	if c == nil || !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.follower.Close()
	if c.watch != nil {
		c.watch.close()
	}
	if c.req != nil {
		c.req.Close()
	}
	if c.ownConn {
		c.nc.Close()
	}
}

// CallOption sets a per-call extra.
type CallOption func(*callOpts)

type callOpts struct {
	locs      []string
	kwargs    map[string]any
	timeout   time.Duration
	routeWait time.Duration
	trace     *Trace
	id        string
	keep      bool
	durable   bool
}

// WithKeepRefs returns a result passed by reference (docs/PROTOCOL.md
// §4.7) as the objref.Ref it is, in place of the value, which the call
// then neither fetches nor deletes: read it with objstore.Fetch, a NATS
// client's object store API, or pass it on as an argument of another
// call. Without it (and without Config.Objects.KeepRefs) the client fetches the
// object, checks its size and SHA-256, decodes it, and deletes it.
func WithKeepRefs() CallOption {
	return func(o *callOpts) { o.keep = true }
}

// Trace is the trace of a call (docs/PROTOCOL.md §5.1).
type Trace struct {
	// Entries has one entry per attempt, in the order they started.
	Entries []schema.TraceEntry
	// Truncated: the planner left out the entries that did not fit its
	// reply (trace_truncated), the latest to start.
	Truncated bool
}

// WithID gives the call's request its id (docs/PROTOCOL.md §4), by which
// another process can cancel it (§9, Cancel): the call then goes through a
// planner, never planned by the client itself. Without it the client picks
// a unique id.
func WithID(id string) CallOption {
	return func(o *callOpts) { o.id = id }
}

// WithDurable makes the call's request durable (docs/PROTOCOL.md §4.8):
// the cluster records it before it runs, and when its planner dies
// another node takes it over and answers. The call goes through a
// planner; its id (WithID, else one the client picks) runs once.
func WithDurable() CallOption {
	return func(o *callOpts) { o.durable = true }
}

// WithTrace has the call traced (docs/PROTOCOL.md §5.1): *dst gets one
// entry per attempt, also when the call fails. The call goes through the
// rpc subject, where a planner traces it.
func WithTrace(dst *Trace) CallOption {
	return func(o *callOpts) { o.trace = dst }
}

// WithRouteWait lets the call wait up to d for an eligible node to appear
// (a node starting, a function registered) before NO_ROUTE
// (route_wait_ms, docs/PROTOCOL.md §4).
func WithRouteWait(d time.Duration) CallOption {
	return func(o *callOpts) { o.routeWait = d }
}

// WithLocs requires the node that runs the call to offer every loc.
func WithLocs(locs ...string) CallOption {
	return func(o *callOpts) { o.locs = append(o.locs, locs...) }
}

// WithKwargs passes keyword arguments.
func WithKwargs(kw map[string]any) CallOption {
	return func(o *callOpts) { o.kwargs = kw }
}

// WithTimeout bounds the call (a deadline on ctx bounds it too).
func WithTimeout(d time.Duration) CallOption {
	return func(o *callOpts) { o.timeout = d }
}

func (c *Client) deadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// Call runs fun(args…, kwargs…) on an eligible node and returns its result
// in the value model of package codec (use codec.Bind or CallAs for a typed
// result). Errors are *schema.Error (match with errors.Is against the schema
// sentinels).
func (c *Client) Call(ctx context.Context, fun string, args []any, opts ...CallOption) (any, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	var o callOpts
	for _, opt := range opts {
		opt(&o)
	}
	if err := schema.CheckFunName(fun); err != nil {
		return nil, err
	}
	ctx, cancel := c.deadline(ctx, o.timeout)
	defer cancel()
	id := c.nextID()
	var up uploads
	defer func() { c.objs.delete(id, up, "argument") }()
	args, kwargs, err := c.objs.prepare(ctx, id, args, o.kwargs, true, &up)
	if err != nil {
		return nil, err
	}
	keep := o.keep || c.cfg.Objects.KeepRefs
	if c.follower != nil && o.trace == nil && o.id == "" && !o.durable {
		call := &planner.Call{RequestID: id, Step: fun, Fun: fun, Locs: o.locs, Args: args, Kwargs: kwargs}
		v, err := c.runner.Call(ctx, call)
		if err == nil {
			return c.objs.result(ctx, id, v, keep)
		}
		if e := schema.AsError(err); e.Code != schema.CodeNoRoute || e.Node != "" {
			return nil, err
		}
		// The view knows no eligible node (it may lag): ask the cluster.
	}
	name := uniqueName(fun, args)
	resp, err := c.run(ctx, &schema.Request{ID: o.id, Cmds: []schema.Command{{Name: name, Fun: fun, Args: args, Kwargs: kwargs, Locs: o.locs}},
		RouteWaitMS: o.routeWait.Milliseconds(), Trace: o.trace != nil, Durability: schema.Durability{Durable: o.durable}},
		nil, runParams{keep: keep})
	if o.trace != nil && resp != nil {
		*o.trace = Trace{Entries: resp.Trace, Truncated: resp.TraceTruncated}
	}
	if err != nil {
		return nil, err
	}
	return resp.Results[name], nil
}

// CallAs is Call with the result assigned to a T.
func CallAs[T any](ctx context.Context, c *Client, fun string, args []any, opts ...CallOption) (T, error) {
	v, err := c.Call(ctx, fun, args, opts...)
	if err != nil {
		var zero T
		return zero, err
	}
	out, err := codec.Bind[T](v)
	if err != nil {
		return out, fmt.Errorf("client: result of %s: %w", fun, err)
	}
	return out, nil
}

// uniqueName picks a command name that no top-level string argument equals,
// so that arguments stay literals.
func uniqueName(fun string, args []any) string {
	name := fun
	for i := 1; ; i++ {
		clash := false
		for _, a := range args {
			if s, ok := a.(string); ok && s == name {
				clash = true
				break
			}
		}
		if !clash {
			return name
		}
		name = fun + "#" + strconv.Itoa(i)
	}
}

func normalizeArgs(args []any) ([]any, error) {
	if args == nil {
		return nil, nil
	}
	v, err := codec.Normalize(args)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "args")
	}
	return v.([]any), nil
}

func normalizeKwargs(kw map[string]any) (map[string]any, error) {
	if kw == nil {
		return nil, nil
	}
	v, err := codec.Normalize(kw)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "kwargs")
	}
	return v.(map[string]any), nil
}

// grace is how much longer than the request's own budget the client waits,
// so that the cluster's TIMEOUT reply (with partial results) arrives first.
const grace = time.Second

// noReply is the message of a request's TIMEOUT when its reply did not
// come.
const noReply = "no reply within the request's budget"

// maxWait caps the client's wait for a request's reply.
const maxWait = 24 * time.Hour

// Run sends a whole request to the cluster's rpc subject. The response comes
// back in full; when it holds an error, Run returns the response (with its
// partial results) and the *schema.Error.
//
// Values pass by reference as in Call (docs/PROTOCOL.md §4.7): a command's
// arguments larger than Config.Objects.InlineMax are uploaded, literal maps of the
// value model that look like references are escaped, an objref.Ref at the
// top level of a command's args or kwargs passes that reference, and the
// references among the results are fetched and their objects deleted
// (unless Config.Objects.KeepRefs).
func (c *Client) Run(ctx context.Context, req *schema.Request) (*schema.Response, error) {
	return c.run(ctx, req, nil, runParams{prepare: true, keep: c.cfg.Objects.KeepRefs})
}

// runParams says what run does with values by reference: prepare the
// commands' arguments (Call has done so), keep the references among
// results rather than fetch them.
type runParams struct {
	prepare, keep bool
}

// Event is one event of a streamed request (see RunWithEvents).
type Event struct {
	// Kind is schema.EventPlanned or schema.EventStep.
	Kind string
	// Planned names the node that plans the request (Kind planned).
	Planned *schema.Planned
	// Step is a step attempt that ended (Kind step; with Request.Progress).
	Step *schema.TraceEntry
}

// RunWithEvents is Run with the response streamed (docs/PROTOCOL.md §5.4):
// on is called, on the caller's goroutine, with the planned event (at once
// with req.Progress, else only if the request runs for more than 200 ms)
// and, with req.Progress, an event per finished step attempt. Events that
// on does not take quickly enough may be dropped; the response never is.
func (c *Client) RunWithEvents(ctx context.Context, req *schema.Request, on func(Event)) (*schema.Response, error) {
	return c.run(ctx, req, on, runParams{prepare: true, keep: c.cfg.Objects.KeepRefs})
}

func (c *Client) run(ctx context.Context, req *schema.Request, on func(Event), p runParams) (*schema.Response, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	r, dl := c.stamp(ctx, req)
	ctx, cancel := context.WithDeadline(ctx, dl.Add(grace))
	defer cancel()
	var resp *schema.Response
	if p.prepare {
		var up uploads
		defer func() {
			// A durable request that may still run (no response came)
			// keeps its arguments: the bucket's max age removes them.
			if resp != nil || !r.Durable {
				c.objs.delete(r.ID, up, "argument")
			}
		}()
		if err := c.prepareCmds(ctx, &r, &up); err != nil {
			return nil, err
		}
	}
	resp, err := c.runMsg(ctx, &r, on)
	if resp == nil {
		return nil, err
	}
	// A durable request's outcome is kept (result_ttl_ms), for Get: the
	// objects of its results stay too.
	if rerr := c.objs.results(ctx, resp, p.keep, !r.Durable); rerr != nil && err == nil {
		return resp, rerr
	}
	return resp, err
}

// prepareCmds prepares the arguments of r's commands (objects.prepare),
// in a copy of its Cmds when any changes.
func (c *Client) prepareCmds(ctx context.Context, r *schema.Request, up *uploads) error {
	copied := false
	for i := range r.Cmds {
		cmd := &r.Cmds[i]
		args, kwargs, err := c.objs.prepare(ctx, r.ID, cmd.Args, cmd.Kwargs, false, up)
		if err != nil {
			return err
		}
		if sameList(args, cmd.Args) && sameMap(kwargs, cmd.Kwargs) {
			continue
		}
		if !copied {
			r.Cmds, copied = append([]schema.Command(nil), r.Cmds...), true
			cmd = &r.Cmds[i]
		}
		cmd.Args, cmd.Kwargs = args, kwargs
	}
	return nil
}

// runMsg encodes r, a stamped request, and sends it.
func (c *Client) runMsg(ctx context.Context, r *schema.Request, on func(Event)) (*schema.Response, error) {
	data, err := c.cfg.Codec.Encode(r)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "request does not encode")
	}
	ctx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	// A durable request outlives its planner: another node takes it over
	// and answers on the same reply subject, so its planner is not
	// watched; the client waits for the response until the deadline.
	token, unwatch := "", func() {}
	if !r.Durable {
		token, unwatch = c.watch.register(ctx, lose)
	}
	defer unwatch()
	// Events of the stream: planned names the node to watch; the caller's
	// own callback, if any, sees them all.
	onEvent := func(ev Event) {
		if p := ev.Planned; p != nil && token != "" {
			c.watch.planned(token, &schema.PlannerAck{Cluster: c.cfg.Cluster, ID: p.ID, Planner: p.Planner,
				Incarnation: p.Incarnation, Instance: p.Instance})
		}
		if on != nil {
			on(ev)
		}
	}
	ct := c.cfg.Codec.ContentType()
	msg := &nats.Msg{Subject: c.subj.RPC(), Data: data, Header: nats.Header{
		codec.HeaderContentType: {ct}, codec.HeaderAccept: {ct}}}
	if node, ok := c.plannerFor(r); ok {
		// Straight to the node best placed to plan it; the shared subject
		// if that node is gone or full.
		msg.Subject = c.subj.NodeRPC(node)
	}
	if !bus.Fits(c.nc, msg) {
		return nil, mesh.TooLarge("request", len(data), c.nc.MaxPayload())
	}
	if c.nc.Status() != nats.CONNECTED {
		return nil, schema.Errorf(schema.CodeNodeUnavailable, "not connected to NATS (%s)", c.nc.Status())
	}
	return c.send(ctx, msg, r, onEvent)
}

// stamp returns a copy of req as the client sends it, a stream with an
// id, a timeout_ms and a deadline_ms, and the deadline the client waits
// for its response until (a grace later).
func (c *Client) stamp(ctx context.Context, req *schema.Request) (schema.Request, time.Time) {
	r := *req
	// Always a stream: its planned event tells which node plans the
	// request, to watch (a quick request still costs one message).
	r.Stream = true
	if r.ID == "" {
		r.ID = c.nextID() // for the logs of both sides
	}
	if r.TimeoutMS <= 0 {
		budget := c.cfg.Timeout
		if dl, ok := ctx.Deadline(); ok {
			// Leave room for the cluster's TIMEOUT reply (with partial
			// results) to arrive before the caller's own deadline.
			left := time.Until(dl)
			budget = left - min(max(left/10, 5*time.Millisecond), 250*time.Millisecond)
		}
		r.TimeoutMS = max(budget.Milliseconds(), 1)
	}
	// The cluster caps budgets (10 min by default); so does the wait here,
	// at a day.
	dl := schema.Deadline(time.Now(), r.TimeoutMS, 0, 0, maxWait)
	if r.DeadlineMS <= 0 {
		// The budget also as an absolute time: a planner that reads the
		// request late (stalled, or far behind) runs none of it after we
		// stopped waiting.
		_, r.DeadlineMS = schema.Budget(time.Now(), dl)
	}
	return r, dl
}

// send sends msg, the encoded r, until a planner answers or it is clear
// that none will, and returns the answer.
func (c *Client) send(ctx context.Context, msg *nats.Msg, r *schema.Request, onEvent func(Event)) (*schema.Response, error) {
	overloaded, absent := 0, 0
	for {
		resp, err := c.rpc(ctx, msg, r, onEvent)
		var nobody *nobodyError
		if resp == nil && err != nil && !errors.As(err, &nobody) && abandons(ctx, r) {
			// The client gives up without the planner's answer (the
			// caller cancelled, the wait ran out, the planner seems lost,
			// the connection failed): stop the request wherever it is
			// planned, so that its steps free their slots now, not at its
			// deadline. Harmless when it already ended.
			c.cancelRequest(r.ID)
		}
		// A node at a limit answers OVERLOADED without reading the request
		// (details.unread): nothing ran, send it again; the queue group
		// will most likely pick another node.
		if overloaded < 2 && resp != nil && unread(resp.Error) && planner.Retryable(resp.Error) {
			overloaded++
			msg.Subject = c.subj.RPC()
			continue
		}
		// No responders on rpc: no node at all, or interest that is
		// moving for a moment (a NATS server of the cluster just stopped,
		// nodes are reconnecting). Nothing ran: look again briefly.
		if errors.As(err, &nobody) && msg.Subject != c.subj.RPC() {
			// The chosen planner is gone (draining, or its view is
			// stale): nothing ran, let the queue group choose.
			msg.Subject = c.subj.RPC()
			continue
		}
		if errors.As(err, &nobody) && planner.Retryable(&planner.AttemptError{Fact: planner.NoResponders, Err: nobody.e}) {
			if absent < len(rpcAbsentWaits) {
				select {
				case <-time.After(rpcAbsentWaits[absent]):
					absent++
					continue
				case <-ctx.Done():
				}
			}
			return nil, nobody.e
		}
		return resp, err
	}
}

// abandons reports whether a client that gives up waiting for r's
// response stops r: always, unless r is durable, which only its caller's
// cancel stops (a durable request outlives the wait for it; its outcome is
// for Get).
func abandons(ctx context.Context, r *schema.Request) bool {
	return !r.Durable || errors.Is(ctx.Err(), context.Canceled)
}

// Cancel asks the cluster to stop the request with this id, wherever it is
// planned (docs/PROTOCOL.md §9), and waits until the NATS server has the
// cancel. A caller in another NATS account can stop only its own requests.
func (c *Client) Cancel(ctx context.Context, id string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := checkCancelID(id); err != nil {
		return err
	}
	if err := mesh.CancelRequest(c.nc, c.subj, id); err != nil {
		return fmt.Errorf("client: cancel %s: %w", schema.Clip(id), err)
	}
	return bus.Flush(ctx, c.nc)
}

// CancelWait is Cancel sent as a request (docs/PROTOCOL.md §9): every node
// that knew the id, and stopped the request, answers. It collects the
// answers until ctx ends (the first one for at most cancelFirstWait when
// ctx has no deadline), or quiet passes after the last one, and returns
// the nodes that answered: none when no node knew the id (or every node
// that did is of a version that does not answer).
func (c *Client) CancelWait(ctx context.Context, id string, quiet time.Duration) ([]string, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkCancelID(id); err != nil {
		return nil, err
	}
	m, err := mesh.CancelMsg(c.subj, id)
	if err != nil {
		return nil, err
	}
	m.Reply = c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(m.Reply)
	if err != nil {
		return nil, fmt.Errorf("client: cancel %s: %w", schema.Clip(id), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishMsg(m); err != nil {
		return nil, fmt.Errorf("client: cancel %s: %w", schema.Clip(id), err)
	}
	// The first answer: until ctx ends, or cancelFirstWait when ctx has no
	// deadline, so that an id no node knew never waits forever.
	first := time.Duration(0)
	if _, ok := ctx.Deadline(); !ok {
		first = max(quiet, cancelFirstWait)
	}
	var nodes []string
	for len(nodes) < maxCancelAnswers {
		within := first
		if len(nodes) > 0 {
			within = quiet
		}
		msg, err := nextWithin(ctx, sub, within)
		if err != nil {
			break // ctx ended, or quiet passed
		}
		a, err := readCancelAnswer(msg)
		if err != nil || a.ID != id {
			continue
		}
		nodes = append(nodes, a.Node)
	}
	return nodes, nil
}

// cancelFirstWait bounds the wait for a cancel's first answer when the
// caller's context has no deadline.
const cancelFirstWait = time.Second

// checkCancelID checks the id a cancel names.
func checkCancelID(id string) error {
	if id == "" || len(id) > schema.MaxRequestIDLen {
		return schema.Errorf(schema.CodeInvalidRequest, "a request id is 1 to %d bytes", schema.MaxRequestIDLen)
	}
	return nil
}

// nextWithin is the next message of sub, waiting until ctx ends or, when
// d > 0, for at most d.
func nextWithin(ctx context.Context, sub *nats.Subscription, d time.Duration) (*nats.Msg, error) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return sub.NextMsgWithContext(ctx)
}

// maxCancelAnswers bounds the answers CancelWait collects.
const maxCancelAnswers = 64

func readCancelAnswer(m *nats.Msg) (*schema.CancelAnswer, error) {
	tree, err := mesh.DecodeReply(m)
	if err != nil {
		return nil, err
	}
	return schema.ParseCancelAnswer(tree)
}

// cancelFlush bounds the wait for the server to take a cancel.
const cancelFlush = 250 * time.Millisecond

// cancelRequest asks the cluster to stop the rpc request id (published on
// P.<cluster>.cancel) and waits briefly for the server to have it: the
// caller is often a process about to exit.
func (c *Client) cancelRequest(id string) {
	err := mesh.CancelRequest(c.nc, c.subj, id)
	if err == nil {
		err = c.nc.FlushTimeout(cancelFlush)
	}
	if err != nil {
		c.cfg.Logger.Debug("cancel not sent", "request_id", id, "error", err)
	}
}

// unread reports whether an error answered a request its node did not
// read (docs/PROTOCOL.md §5.3).
func unread(e *schema.Error) bool {
	if e == nil {
		return false
	}
	d, _ := e.Details.(map[string]any)
	u, _ := d["unread"].(bool)
	return u
}

// nobodyError is the NO_ROUTE of "no responders on rpc".
type nobodyError struct{ e *schema.Error }

func (n *nobodyError) Error() string { return n.e.Error() }

// rpcAbsentWaits are the pauses before sending again a request that found
// no responders on rpc: 150 ms in all before NO_ROUTE.
var rpcAbsentWaits = []time.Duration{10 * time.Millisecond, 40 * time.Millisecond, 100 * time.Millisecond}

// maxPartBytes bounds the parts of a response (split_results) that the
// client keeps: a node's default max_result_bytes.
const maxPartBytes = planner.DefaultMaxResultBytes

// rpc sends one rpc request, req encoded in msg, and reads its response,
// and with split_results the parts that come before it. "No responders"
// comes back as a *nobodyError.
func (c *Client) rpc(ctx context.Context, msg *nats.Msg, req *schema.Request, on func(Event)) (*schema.Response, error) {
	var onMsg func(*nats.Msg)
	if on != nil {
		onMsg = func(m *nats.Msg) {
			if ev, ok := decodeEvent(m); ok {
				on(ev)
			}
		}
	}
	// Without progress a stream carries at most its planned event before
	// the result.
	events := 4
	if req.Progress {
		events = mesh.StreamEvents
	}
	var m *nats.Msg
	var parts []*nats.Msg
	var err error
	// The reply's expected size waits its turn, as a direct call's does:
	// many big replies at once would pass what the NATS server holds for
	// one connection.
	key := ""
	if len(req.Cmds) == 1 {
		key = req.Cmds[0].Fun
	}
	var held int64
	if held, err = c.flow.Reserve(ctx, key, len(msg.Data), c.nc.MaxPayload()); err == nil {
		if req.SplitResults {
			m, parts, err = c.req.RequestStreamParts(ctx, msg, events, onMsg, maxPartBytes)
		} else {
			m, err = c.req.RequestStream(ctx, msg, events, onMsg)
		}
		c.flow.Release(held)
		if err == nil {
			c.flow.Observe(key, len(m.Data))
		}
	}
	if err != nil {
		var lost *plannerLost
		switch {
		case errors.Is(err, mesh.ErrPartsTooLarge):
			return nil, &schema.Error{Code: schema.CodePayloadTooLarge, Message: "the response's parts: " + err.Error(),
				Details: map[string]any{"limit": "max_result_bytes", "max": int64(maxPartBytes)}}
		case errors.As(context.Cause(ctx), &lost):
			return nil, &schema.Error{Code: schema.CodeNodeUnavailable, Node: lost.node,
				Message: lost.Error() + " while planning the request; some of its steps may have run",
				Details: map[string]any{"planner": lost.node}}
		case errors.Is(err, nats.ErrNoResponders):
			return nil, &nobodyError{schema.Errorf(schema.CodeNoRoute, "no node serves cluster %s (no responders on %s)", c.cfg.Cluster, c.subj.RPC())}
		case errors.Is(err, nats.ErrTimeout):
			return nil, schema.Ended(ctx, fmt.Errorf("%w: %w", context.DeadlineExceeded, err), noReply, "cancelled")
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return nil, schema.Ended(ctx, err, noReply, "cancelled")
		case errors.Is(err, nats.ErrPermissionViolation):
			return nil, mesh.PermissionDenied(err, "send requests to cluster "+c.cfg.Cluster)
		}
		return nil, schema.Wrap(schema.CodeNodeUnavailable, err, "rpc")
	}
	resp, err := mesh.ReadReply(m, schema.ReadResponse)
	if err != nil {
		return nil, mesh.BadReply(err, "bad rpc response")
	}
	if err := mesh.MergeParts("the planner", resp, parts); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return resp, resp.Error
	}
	return resp, nil
}

// decodeEvent reads one event of a stream; a message that is no event of
// this version is skipped.
func decodeEvent(m *nats.Msg) (Event, bool) {
	tree, err := mesh.DecodeReply(m)
	if err != nil {
		return Event{}, false
	}
	switch kind := m.Header.Get(schema.HeaderEvent); kind {
	case schema.EventPlanned:
		p, err := schema.ParsePlanned(tree)
		return Event{Kind: kind, Planned: p}, err == nil
	case schema.EventStep:
		s, err := schema.ParseTraceEntry(tree)
		return Event{Kind: kind, Step: s}, err == nil
	}
	return Event{}, false
}

// Peers returns the live nodes. A following client answers from its view;
// otherwise Peers syncs with the cluster first.
func (c *Client) Peers(ctx context.Context) ([]membership.Peer, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if c.follower != nil {
		return c.table.Peers(), nil
	}
	t := membership.New(membership.Config{})
	f, err := mesh.Follow(ctx, mesh.FollowConfig{
		Conn: c.nc, Subjects: c.subj, Cluster: c.cfg.Cluster, Table: t,
		SyncQuiet: c.cfg.SyncQuiet, Logger: c.cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("client: peers: %w", err)
	}
	f.Close()
	return t.Peers(), nil
}

// connectError is Connect's error for a connection NATS refused:
// UNAUTHENTICATED, saying what failed, when credentials or TLS are the
// cause (trying again will not help); the error as it is otherwise.
func connectError(servers []string, err error) error {
	if errors.Is(err, bus.ErrInvalidConfig) {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if why, ok := bus.ExplainConnectError(err); ok {
		return schema.Wrap(schema.CodeUnauthenticated, err, "%s", why)
	}
	// Nothing answered (or ctx ended first): the same message wherever a
	// connection fails, naming the servers and the first cause.
	urls := bus.SplitURLs(servers...)
	if len(urls) == 0 {
		urls = []string{bus.DefaultURL}
	}
	cause := err
	for errors.Unwrap(cause) != nil {
		cause = errors.Unwrap(cause)
	}
	return schema.Wrap(schema.CodeNodeUnavailable, cause, "cannot reach NATS at %s", strings.Join(bus.RedactAll(urls), ","))
}
