// Package node runs an MPREG node on a NATS connection: it offers registered
// Go functions to the cluster, answers exec requests for them, plans and runs
// whole requests that arrive on the rpc subject, and announces itself and
// follows the others over gossip (docs/PROTOCOL.md §2–§8).
package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// Version is this implementation's version, sent in hello.meta.mpreg.
const Version = "0.1.0"

// ErrInvalidConfig wraps every configuration and registration error.
var ErrInvalidConfig = errors.New("node: invalid config")

// ErrNodeIDInUse is Start's error when another live process in the cluster
// already uses the node's id.
var ErrNodeIDInUse = errors.New("node: node id in use")

// ErrConnClosed is Err's value for a node that stopped because its NATS
// connection was closed for good under it (nats.go gave up reconnecting, or
// the server refused the connection), not by the node's owner: such a node
// cannot serve, so it stops instead of lingering.
var ErrConnClosed = errors.New("node: NATS connection closed for good")

// Recorder is told of what a node does, for metrics. Its methods are
// called on the node's hot paths, from many goroutines at once: they must
// be quick, must not block, and must be safe for concurrent use. A code is
// CodeOK or an error code of docs/PROTOCOL.md §5; a fun is a registered
// function's name or "_unknown"; a kind is hello, heartbeat, goodbye or
// sync.
type Recorder interface {
	// RequestDone: a request this node planned ended; d is from its
	// receipt to its reply.
	RequestDone(code string, d time.Duration)
	// StepDone: a step ended on this node; run is how long the function
	// ran (0 when it did not run).
	StepDone(fun, code string, run time.Duration)
	// StepQueued: a step got its run slot after waiting d.
	StepQueued(d time.Duration)
	// RemoteStepDone: a step this node's planner sent to node peer ended.
	RemoteStepDone(peer, code string)
	// GossipReceived: a gossip message of that kind arrived.
	GossipReceived(kind string)
}

// CodeOK is the code a Recorder gets for work that succeeded.
const CodeOK = schema.OutcomeOK

// unknownFun stands for a function name that is not registered here.
const unknownFun = "_unknown"

// Stats are a node's counters since start.
type Stats struct {
	Requests      int64 // rpc requests served
	RequestErrors int64 // rpc requests that ended in an error
	Steps         int64 // exec steps run here (local or remote callers)
	StepErrors    int64 // such steps that ended in an error
	Foreign       int64 // messages dropped for another cluster id
	Inflight      int64 // steps running or queued here now
	Queued        int64 // of those, the steps waiting for a run slot
	Planning      int64 // rpc requests being planned here now
	RouteWaiting  int64 // steps of those requests waiting for a route now
	RouteWakes    int64 // times a membership change woke a request waiting for a route
	// CancelsRefused counts request cancels ignored because their sender
	// could not be read (authz.Read): a malformed header, a stamp where
	// none belongs or none where one must be.
	CancelsRefused int64
	// ObjectsDeleted counts the objects of requests planned here that the
	// node deleted from the bucket; ObjectDeletesDropped the deletes it
	// left to the bucket's max age, past Objects.MaxPendingDeletes.
	ObjectsDeleted, ObjectDeletesDropped int64
}

// Node is one MPREG node: a registry of functions, an executor that runs
// them, the rpc front that plans whole requests, and the two halves of
// membership (mesh.Announcer speaks, mesh.Follower listens). Create it with
// New, register functions, Start it, and end it with Drain or Close.
type Node struct {
	*env
	reg      *registry
	table    *membership.Table
	ann      *mesh.Announcer
	follower atomic.Pointer[mesh.Follower]
	executor *executor
	front    *front
	subs     []*nats.Subscription
	rpcSub   *nats.Subscription
	nodeRPC  *nats.Subscription // P.<cluster>.node.<id>.rpc
	extRPC   *nats.Subscription // P.<cluster>.ext.rpc
	execSub  *nats.Subscription
	started0 time.Time // when Start began, for $SRV.STATS
	js       jetStream
}

// New returns a node on nc. The caller owns nc and closes it after the node.
// Every node offers echo(x) and echos(*args).
func New(nc *nats.Conn, cfg Config) (*Node, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, nc: nc, subj: bus.NewSubjects(cfg.Prefix, cfg.Cluster), log: cfg.Hooks.Logger.With("node", cfg.NodeID)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.done = make(chan struct{})
	n := &Node{env: e, reg: &registry{funcs: map[string]*fn{}}, js: jetStream{known: make(chan struct{})}}
	n.executor = newExecutor(e, n.reg)
	n.executor.objs.known = n.js.known
	n.table = membership.New(membership.Config{Self: cfg.NodeID, DeadAfter: cfg.Gossip.DeadAfter, ForgetAfter: cfg.Gossip.ForgetAfter,
		SelfLoad: n.executor.inflight.Load})
	n.ann = mesh.NewAnnouncer(mesh.AnnounceConfig{
		Conn: nc, Subjects: e.subj, Cluster: cfg.Cluster, Node: cfg.NodeID, Interval: cfg.Gossip.HeartbeatInterval,
		Offer: n.offer, Load: func() schema.Load {
			return schema.Load{Inflight: n.executor.inflight.Load(), Limit: int64(cfg.Limits.MaxInflight)}
		},
		Table: n.table, Logger: n.log, Received: n.gossipReceived(),
	})
	n.front = newFront(e, n.executor, n.ann, n.table, &n.follower)
	n.front.dur = newDurables(n.front, n.js.known, n.ann.Instance())
	_ = n.Register("echo", func(x any) any { return x }, WithParams("x"), Idempotent(), Inline())
	_ = n.Register("echos", func(args ...any) []any {
		if args == nil {
			return []any{}
		}
		return args
	}, Idempotent(), Inline())
	return n, nil
}

// offer is what the node offers now, for its hello.
func (n *Node) offer() mesh.Offer {
	urls := n.cfg.AdvertisedURLs
	if len(urls) == 0 {
		urls = n.nc.Servers()
	}
	// Peers dial with their own credentials: never tell them ours.
	urls = slices.Clone(urls)
	for i, u := range urls {
		urls[i] = bus.WithoutUserInfo(u)
	}
	meta := map[string]string{"mpreg": Version}
	if n.cfg.Name != "" {
		meta["name"] = n.cfg.Name
	}
	for k, v := range n.cfg.Meta {
		meta[k] = v
	}
	return mesh.Offer{Funs: n.reg.funs(n.cfg.Locs), Idempotent: n.reg.idempotent(), RetryAfterMS: n.reg.retryAfter(),
		Retry: n.reg.retry(), AdvertisedURLs: urls, Meta: meta}
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Ready returns nil while the node serves: it has started and synced with
// the cluster, is not draining or closed, and its NATS connection is up.
// Otherwise it says why not (for a readiness probe).
func (n *Node) Ready() error {
	switch {
	case n.closing.Load() || n.isDone():
		return errors.New("node: stopped")
	case n.draining.Load():
		return errors.New("node: draining")
	case !n.serving.Load():
		return errors.New("node: starting")
	case !n.nc.IsConnected():
		return errors.New("node: NATS connection down")
	}
	return nil
}

// isDone reports whether the node has stopped.
func (n *Node) isDone() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// gossipReceived is the mesh hook that tells the Recorder of gossip; nil
// without a Recorder.
func (n *Node) gossipReceived() func(string) {
	if n.cfg.Hooks.Recorder == nil {
		return nil
	}
	return n.cfg.Hooks.Recorder.GossipReceived
}

// SetAuthz replaces the policy that judges the requests this node plans
// from now on (nil allows everything); requests already planned keep
// running. It is safe to call at any time, e.g. on SIGHUP.
func (n *Node) SetAuthz(p *authz.Policy) { n.front.policy.Store(p) }

// Limits returns the node's limits, defaults filled in.
func (n *Node) Limits() Limits { return n.cfg.Limits }

// Objects returns the node's settings for values passed by reference,
// defaults filled in.
func (n *Node) Objects() Objects { return n.cfg.Objects }

// Cluster returns the cluster id.
func (n *Node) Cluster() string { return n.cfg.Cluster }

// Table returns the node's membership view.
func (n *Node) Table() *membership.Table { return n.table }

// Done is closed when the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped on its own (ErrConnClosed, wrapping the
// connection's last error), or nil while it runs and after Drain or Close.
func (n *Node) Err() error {
	if p := n.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	x, fr := n.executor, n.front
	s := Stats{
		Requests: fr.stats.requests.Load(), RequestErrors: fr.stats.requestErrors.Load(),
		Steps: x.steps.Load(), StepErrors: x.stepErrors.Load(), Foreign: x.foreign.Load(),
		Inflight: x.inflight.Load(), Queued: x.queued.Load(), Planning: fr.planning.Load(),
		RouteWaiting: fr.runner.Waiting(), RouteWakes: fr.runner.Wakes(),
		CancelsRefused: fr.stats.cancelsRefused.Load(),
		ObjectsDeleted: fr.deleter.deleted.Load(), ObjectDeletesDropped: fr.deleter.dropped.Load(),
	}
	if f := n.follower.Load(); f != nil {
		s.Foreign += f.Foreign()
	}
	return s
}

// Register offers a Go function under name. fn is a RawFunc or a typed
// function func([ctx context.Context,] params...) ([result,] [error]); see
// WithParams for kwargs. Registering on a running node announces the change
// (a hello with a higher version). Registering a name again replaces it.
func (n *Node) Register(name string, f any, opts ...FuncOption) error {
	if err := schema.CheckFunName(name); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, schema.AsError(err).Message)
	}
	var o funcOpts
	for _, opt := range opts {
		opt(&o)
	}
	for _, l := range o.locs {
		if err := schema.CheckLoc(l); err != nil {
			return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, name, schema.AsError(err).Message)
		}
	}
	retry, err := checkRetry(name, o.retry)
	if err != nil {
		return err
	}
	call, readsCtx, err := wrapCtx(name, f, o.params, o.required)
	if err != nil {
		return err
	}
	n.reg.put(&fn{name: name, locs: o.locs, idempotent: o.idempotent, retryAfter: o.retryAfter, retry: retry, inline: o.inline, call: call, readsCtx: readsCtx,
		blobs: blobSlotsOf(f, o.params)})
	n.ann.Changed()
	return nil
}

// Unregister stops offering name and announces the change. It reports
// whether the function was registered.
func (n *Node) Unregister(name string) bool {
	ok := n.reg.remove(name)
	if ok {
		n.ann.Changed()
	}
	return ok
}

// watchRoutes makes the node meet the nodes behind a NATS server that just
// joined its server's cluster (a route formed: NATS tells clients of the
// new server's URL): it announces itself and syncs at once, rather than a
// heartbeat later. The connection's handler is chained, not replaced.
func (n *Node) watchRoutes() {
	prev := n.nc.Opts.DiscoveredServersCB
	n.nc.SetDiscoveredServersHandler(func(nc *nats.Conn) {
		if prev != nil {
			prev(nc)
		}
		if n.draining.Load() {
			return
		}
		n.log.Info("NATS servers discovered: announcing and syncing", "servers", len(nc.DiscoveredServers()))
		n.ann.Announce()
		n.executor.goOwned(func() {
			if f := n.follower.Load(); f != nil {
				f.Refresh(n.ctx)
			}
		})
	})
}

// Start subscribes the node's subjects, announces it, learns the cluster and
// starts heartbeats. It returns once the node serves requests.
func (n *Node) Start(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: node already started", ErrInvalidConfig)
	}
	n.started0 = time.Now()
	n.executor.mu.Lock()
	n.status = n.nc.StatusChanged(nats.CLOSED)
	n.watched = make(chan struct{})
	go n.watchConn(n.status) // owned: Close ends it and waits for it
	n.executor.mu.Unlock()
	if !n.executor.goOwned(n.probeJetStream) { // beside the start, not before it
		n.js.ended()
	}
	n.executor.goOwned(func() { n.front.deleter.run(n.ctx, n.executor.quit) })
	sub := func(subject, queue string, h nats.MsgHandler) (*nats.Subscription, error) {
		s, err := n.nc.QueueSubscribe(subject, queue, h)
		if err != nil {
			return nil, fmt.Errorf("node: subscribe %s: %w", subject, err)
		}
		_ = s.SetPendingLimits(-1, 256<<20)
		n.subs = append(n.subs, s)
		return s, nil
	}
	fail := func(err error) error { n.Close(); return err }
	if err := n.front.start(); err != nil {
		return fail(err)
	}
	es, err := sub(n.subj.Exec(n.cfg.NodeID), "", n.executor.onExec)
	if err != nil {
		return fail(err)
	}
	n.execSub = es
	if _, err := sub(n.subj.Cancel(n.cfg.NodeID), "", n.executor.onCancel); err != nil {
		return fail(err)
	}
	for _, subject := range []string{n.subj.CancelRequest(), n.subj.ExtCancel()} {
		if _, err := sub(subject, "", n.front.onCancelRequest); err != nil {
			return fail(err)
		}
	}
	if err := n.ann.Answer(); err != nil {
		return fail(fmt.Errorf("node: %w", err))
	}
	if err := n.answerService(); err != nil {
		return fail(err)
	}
	h := n.ann.Hello()
	n.table.ApplyHello(h)
	f, err := mesh.Follow(ctx, mesh.FollowConfig{
		Conn: n.nc, Subjects: n.subj, Cluster: n.cfg.Cluster, Table: n.table,
		Self: n.cfg.NodeID, SelfIncarnation: n.ann.Incarnation(), SelfInstance: n.ann.Instance(),
		SelfVersion: n.ann.Version, Refute: n.ann.Refute,
		SyncQuiet: n.cfg.Gossip.SyncQuiet, PruneInterval: n.cfg.Gossip.HeartbeatInterval, Logger: n.log,
		LearnServers: n.nc.Opts.InProcessServer == nil, // an in-process connection has no pool to fail over in
		Received:     n.gossipReceived(),
	})
	if err != nil {
		return fail(err)
	}
	n.follower.Store(f)
	if inc := f.Twin(); inc != 0 {
		// A live process answered the sync under this id: announcing would
		// take its routing over.
		return fail(fmt.Errorf("%w: a live process (incarnation %d) in cluster %q is %q already",
			ErrNodeIDInUse, inc, n.cfg.Cluster, n.cfg.NodeID))
	}
	n.ann.Announce()
	n.watchRoutes()
	rs, err := sub(n.subj.RPC(), bus.QueueGroup, n.front.onRPC)
	if err != nil {
		return fail(err)
	}
	n.rpcSub = rs
	if n.nodeRPC, err = sub(n.subj.NodeRPC(n.cfg.NodeID), "", n.front.onRPC); err != nil {
		return fail(err)
	}
	if n.extRPC, err = sub(n.subj.ExtRPC(), bus.QueueGroup, n.front.onRPC); err != nil {
		return fail(err)
	}
	for _, subject := range []string{n.subj.Status(), n.subj.ExtStatus()} {
		if _, err := sub(subject, bus.QueueGroup, n.front.dur.onStatus); err != nil {
			return fail(err)
		}
	}
	if err := bus.Flush(ctx, n.nc); err != nil {
		return fail(fmt.Errorf("node: flush: %w", err))
	}
	n.ann.Heartbeats()
	n.serving.Store(true)
	n.log.Info("node started", "cluster", n.cfg.Cluster, "funs", len(h.Funs), "locs", n.cfg.Locs, "peers", len(n.table.Peers())-1)
	return nil
}

// Drain stops taking new work, announces goodbye, waits for the requests
// and steps in flight (until ctx is done), then closes the node. New exec
// requests meanwhile get SHUTTING_DOWN.
func (n *Node) Drain(ctx context.Context) error {
	if !n.draining.CompareAndSwap(false, true) {
		<-n.done
		return nil
	}
	var rpcClosed []<-chan nats.SubStatus
	if n.started.Load() && !n.closing.Load() {
		rpcClosed = n.leave()
	}
	for _, closed := range rpcClosed {
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	err := n.waitIdle(ctx)
	if err == nil && n.execSub != nil && n.nc.IsConnected() {
		// Drain exec too: steps peers sent before they heard the goodbye
		// are answered SHUTTING_DOWN (and re-routed), not dropped by Close.
		closed := n.execSub.StatusChanged(nats.SubscriptionClosed)
		if n.execSub.Drain() == nil {
			select {
			case <-closed:
			case <-ctx.Done():
			}
		}
		err = n.waitIdle(ctx)
	}
	if err == nil && n.started.Load() && n.nc.IsConnected() {
		n.ann.DrainAnswers(ctx)
	}
	if n.started.Load() && n.nc.IsConnected() {
		// The intermediates of the last requests; their results stay
		// for their callers, to the bucket's max age.
		n.front.deleter.flush(ctx)
	}
	n.Close()
	return err
}

// leave stops taking requests and says goodbye, for Drain. From here on
// sync and info are answered with the goodbye (see onHelloRequest): a peer
// that joins now does not take the node for a live one, and a process
// starting under its id hears that it is still there (it holds the exec
// subject until it closes). Heartbeats go on: they keep its steps in
// flight from being declared lost by the peers that sent them. It returns
// the channels that tell when the rpc subscriptions it drains are closed.
func (n *Node) leave() []<-chan nats.SubStatus {
	// Cut off from NATS nothing is in transit to this node and nothing it
	// sends gets out: drain the work, not the subscriptions.
	connected := n.nc.IsConnected()
	var rpcClosed []<-chan nats.SubStatus
	for _, s := range []*nats.Subscription{n.rpcSub, n.nodeRPC, n.extRPC} {
		switch {
		case s == nil:
		case !connected:
			_ = s.Unsubscribe()
		default:
			// Drain, not Unsubscribe: requests the server sent before
			// it took the unsubscribe are served instead of dropped
			// (their callers would wait for their whole timeout).
			closed := s.StatusChanged(nats.SubscriptionClosed)
			if s.Drain() != nil {
				_ = s.Unsubscribe()
			} else {
				rpcClosed = append(rpcClosed, closed)
			}
		}
	}
	n.ann.Leave()
	if connected {
		_ = n.nc.FlushTimeout(time.Second)
	}
	n.log.Info("node draining", "connected", connected)
	return rpcClosed
}

// waitIdle waits until no step runs or waits here, or ctx ends.
func (n *Node) waitIdle(ctx context.Context) error {
	select {
	case <-n.executor.work.idle():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: drain: %w", ctx.Err())
	}
}

// watchConn stops the node when its connection is closed for good under
// it: nats.go gives up (or never reconnects, after an error the server
// calls fatal), and a node without a connection must not linger as if it
// served. Close ends it by removing the status listener.
func (n *Node) watchConn(status chan nats.Status) {
	defer close(n.watched)
	if !n.nc.IsClosed() {
		if _, ok := <-status; !ok {
			return // Close removed the listener
		}
	}
	if n.closing.Load() {
		return
	}
	cause := n.nc.LastError()
	if cause == nil {
		cause = nats.ErrConnectionClosed
	}
	n.shutdown(false, fmt.Errorf("%w: %w", ErrConnClosed, cause))
}

// Close stops the node at once: work in flight is cancelled. It waits for
// the node's goroutines, is idempotent, and does nothing on a nil Node. The
// NATS connection stays open.
func (n *Node) Close() {
	if n == nil {
		return
	}
	n.shutdown(true, nil)
}

// shutdown is Close; waitWatch is false when watchConn calls it, which
// must not wait for itself, with the cause that Err reports.
func (n *Node) shutdown(waitWatch bool, cause error) {
	n.executor.mu.Lock()
	if !n.closing.CompareAndSwap(false, true) {
		n.executor.mu.Unlock()
		if waitWatch { // the closer waits for watchConn, which must not wait for it
			<-n.done
		}
		return
	}
	if cause != nil {
		n.err.Store(&cause)
		n.log.Error("NATS connection closed for good: the node stops", "error", cause)
	}
	status, watched := n.status, n.watched
	n.executor.mu.Unlock()
	if status != nil {
		n.nc.RemoveStatusListener(status)
		if waitWatch {
			<-watched
		}
	}
	n.draining.Store(true)
	for _, s := range n.subs {
		_ = s.Unsubscribe()
	}
	n.ann.Close()
	n.follower.Load().Close()
	if n.nc.IsConnected() {
		// Make the server drop the node's interest before Close returns:
		// a request sent after Close then gets "no responders" at once
		// instead of being delivered to a dead subscription and waiting
		// for its timeout.
		_ = n.nc.FlushTimeout(time.Second)
	}
	close(n.executor.quit)
	n.cancel()
	n.front.close()
	n.executor.wg.Wait()
	<-n.executor.work.idle() // inline steps run on subscription goroutines, not in wg
	n.js.ended()
	n.log.Info("node stopped")
	close(n.done)
}
