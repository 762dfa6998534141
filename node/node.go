// Package node runs an MPREG node on a NATS connection: it offers registered
// Go functions to the cluster, answers exec requests for them, plans and runs
// whole requests that arrive on the rpc subject, and announces itself and
// follows the others over gossip (docs/PROTOCOL.md §2–§8).
package node

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/semaphore"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/lograte"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
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

// Config configures a Node. Zero fields take the defaults in DefaultConfig.
type Config struct {
	// Cluster is the cluster id. Default "default".
	Cluster string
	// NodeID is unique among live nodes. Default host name + "-" + 6 random
	// base32 characters.
	NodeID string
	// Name is a human-readable name, sent in hello.meta.name.
	Name string
	// Locs are the node's resource tags; every function offers them.
	Locs []string
	// Prefix is the subject prefix. Default "mpreg".
	Prefix string
	// HeartbeatInterval is the gossip heartbeat period. Default 1 s.
	HeartbeatInterval time.Duration
	// DeadAfter is how long a silent peer stays routable. Default 3
	// heartbeat intervals.
	DeadAfter time.Duration
	// ForgetAfter is how long a silent peer stays listed. Default 30
	// heartbeat intervals.
	ForgetAfter time.Duration
	// SyncQuiet is how long the start-up sync waits after the last reply.
	// Default 200 ms.
	SyncQuiet time.Duration
	// DefaultTimeout is a request's budget when it gives no timeout_ms.
	// Default 30 s.
	DefaultTimeout time.Duration
	// MaxTimeout caps a request's timeout_ms. Default 10 min.
	MaxTimeout time.Duration
	// PlannerAckAfter is how long a request that asks for a planner ack
	// (schema.HeaderPlannerAck) is planned before the ack is sent: quick
	// requests never send one. Default 200 ms; negative sends it at once.
	PlannerAckAfter time.Duration
	// Limits bound the requests this node plans.
	Limits planner.Limits
	// MaxInflight is the most steps that run here at once. Default 256.
	MaxInflight int
	// MaxQueue is the most steps that wait for a run slot; more get
	// OVERLOADED. Default 1024.
	MaxQueue int
	// MaxRequests is the most whole requests this node plans at once; more
	// are answered OVERLOADED at once. Default 4096.
	MaxRequests int
	// MaxBytesInFlight bounds the bytes of the steps this node's planner
	// has in flight to other nodes (exec requests and the replies expected
	// to them, see mesh.Flow); more steps wait. Default 64 MiB.
	MaxBytesInFlight int64
	// MaxPlanningBytes bounds the memory of the requests this node plans
	// at once: their decoded bodies and the results they hold. A request
	// that finds no room is answered OVERLOADED. Default 1 GiB.
	MaxPlanningBytes int64
	// MaxResultBytes bounds the results one request holds at once (a
	// result no step reads again is let go); past it the request fails
	// with PAYLOAD_TOO_LARGE. Default 512 MiB.
	MaxResultBytes int64
	// AdvertisedURLs are the NATS URLs announced in hello. Default: the
	// connection's known servers.
	AdvertisedURLs []string
	// Meta is added to hello.meta.
	Meta map[string]string
	// Observer, when set, is told of every step this node's planner runs.
	Observer planner.Observer
	// Logger. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, with a fresh random node id.
func DefaultConfig() Config {
	return Config{
		Cluster:           "default",
		NodeID:            NewNodeID(),
		Prefix:            bus.DefaultPrefix,
		HeartbeatInterval: time.Second,
		SyncQuiet:         200 * time.Millisecond,
		DefaultTimeout:    30 * time.Second,
		MaxTimeout:        10 * time.Minute,
		PlannerAckAfter:   200 * time.Millisecond,
		Limits:            planner.DefaultLimits(),
		MaxInflight:       256,
		MaxQueue:          1024,
		MaxRequests:       4096,
		MaxBytesInFlight:  mesh.DefaultWindow,
		MaxPlanningBytes:  1 << 30,
		MaxResultBytes:    512 << 20,
	}
}

// NewNodeID returns host name + "-" + 6 random base32 characters, with the
// host name cut to fit the id rules.
func NewNodeID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
		if b.Len() >= 57 {
			break
		}
	}
	if b.Len() == 0 {
		b.WriteString("node")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return b.String() + "-" + base32.StdEncoding.EncodeToString(rnd[:])[:6]
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Cluster == "" {
		c.Cluster = d.Cluster
	}
	if c.NodeID == "" {
		c.NodeID = d.NodeID
	}
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 3 * c.HeartbeatInterval
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = 30 * c.HeartbeatInterval
	}
	if c.SyncQuiet <= 0 {
		c.SyncQuiet = d.SyncQuiet
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = d.DefaultTimeout
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = d.MaxTimeout
	}
	if c.PlannerAckAfter == 0 {
		c.PlannerAckAfter = d.PlannerAckAfter
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = d.MaxQueue
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = d.MaxRequests
	}
	if c.MaxBytesInFlight <= 0 {
		c.MaxBytesInFlight = d.MaxBytesInFlight
	}
	if c.MaxPlanningBytes <= 0 {
		c.MaxPlanningBytes = d.MaxPlanningBytes
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = d.MaxResultBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := schema.CheckID(c.Cluster); err != nil {
		return c, fmt.Errorf("%w: cluster: %s", ErrInvalidConfig, err.Message)
	}
	if err := schema.CheckID(c.NodeID); err != nil {
		return c, fmt.Errorf("%w: node id: %s", ErrInvalidConfig, err.Message)
	}
	if err := bus.CheckPrefix(c.Prefix); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	for _, l := range c.Locs {
		if err := schema.CheckLoc(l); err != nil {
			return c, fmt.Errorf("%w: %s", ErrInvalidConfig, err.Message)
		}
	}
	if len(c.Meta) > schema.MaxMeta-2 { // name and mpreg are added
		return c, fmt.Errorf("%w: at most %d meta entries", ErrInvalidConfig, schema.MaxMeta-2)
	}
	for k, v := range c.Meta {
		if len(k) > schema.MaxMetaKey || len(v) > schema.MaxMetaValue {
			return c, fmt.Errorf("%w: meta %s: keys are at most %d bytes, values %d", ErrInvalidConfig, schema.Clip(k), schema.MaxMetaKey, schema.MaxMetaValue)
		}
	}
	if len(c.Name) > schema.MaxMetaValue {
		return c, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidConfig, schema.MaxMetaValue)
	}
	c.Locs = slices.Clone(c.Locs)
	c.AdvertisedURLs = slices.Clone(c.AdvertisedURLs)
	return c, nil
}

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
}

// Node is one MPREG node. Create it with New, register functions, Start it,
// and end it with Drain or Close.
type Node struct {
	cfg    Config
	nc     *nats.Conn
	subj   bus.Subjects
	log    *slog.Logger
	reg    registry
	table  *membership.Table
	execer *mesh.Execer
	runner *planner.Runner
	memory *semaphore.Weighted // MaxPlanningBytes

	incarnation int64  // start time in ms (docs/PROTOCOL.md §7)
	instance    string // random, unique to this process: two starts in one ms differ
	version     atomic.Int64
	seq         atomic.Int64
	refuted     atomic.Int64 // unix ns of the last refute
	inflight    atomic.Int64 // steps running or queued here
	queued      atomic.Int64 // steps waiting for a slot
	planning    atomic.Int64 // rpc requests being planned here
	slots       chan struct{}

	follower  atomic.Pointer[mesh.Follower]
	running   runningSet // exec steps running here, by exec id
	planned   runningSet // rpc requests planned here, by request id
	unplanned recentIDs  // cancels of requests this node has not planned (yet)
	subs      []*nats.Subscription
	rpcSub    *nats.Subscription
	execSub   *nats.Subscription

	// lifecycle
	mu       sync.RWMutex // guards wg.Add against closing
	wg       sync.WaitGroup
	work     tracker // requests and steps in flight, for Drain
	ctx      context.Context
	cancel   context.CancelFunc
	quit     chan struct{}
	handoff  chan func() // to an idle worker; see goOwned
	done     chan struct{}
	err      atomic.Pointer[error] // why the node stopped on its own
	status   chan nats.Status      // the connection's CLOSED event; see watchConn
	watched  chan struct{}         // closed when watchConn returns
	started  atomic.Bool
	draining atomic.Bool
	closing  atomic.Bool

	requests, requestErrors, steps, stepErrors, foreign atomic.Int64
	logs                                                lograte.Limiter // for events a peer can cause at will
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
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:         cfg,
		nc:          nc,
		subj:        bus.NewSubjects(cfg.Prefix, cfg.Cluster),
		log:         cfg.Logger.With("node", cfg.NodeID),
		reg:         registry{funcs: map[string]*fn{}},
		incarnation: time.Now().UnixMilli(),
		instance:    nuid.Next(),
		ctx:         ctx,
		cancel:      cancel,
		quit:        make(chan struct{}),
		handoff:     make(chan func()),
		done:        make(chan struct{}),
		slots:       make(chan struct{}, cfg.MaxInflight),
	}
	n.table = membership.New(membership.Config{Self: cfg.NodeID, DeadAfter: cfg.DeadAfter, ForgetAfter: cfg.ForgetAfter,
		SelfLoad: n.inflight.Load})
	n.execer = &mesh.Execer{Conn: nc, Subjects: n.subj, Cluster: cfg.Cluster, Table: n.table, Logger: n.log,
		Flow: mesh.NewFlow(cfg.MaxBytesInFlight)}
	n.memory = semaphore.NewWeighted(cfg.MaxPlanningBytes)
	n.runner = &planner.Runner{
		Router:   planner.RouterFunc(n.route),
		Executor: planner.ExecutorFunc(n.exec),
		Observer: cfg.Observer,
		Logger:   n.log,
		Size: func(v any) int64 {
			size, _ := codec.SizeWithin(v, int(cfg.MaxResultBytes)+1)
			return int64(size)
		},
		MaxResultBytes: cfg.MaxResultBytes,
		Memory:         n.memory,
	}
	n.version.Store(1)
	_ = n.Register("echo", func(x any) any { return x }, WithParams("x"), Idempotent(), Inline())
	_ = n.Register("echos", func(args ...any) []any {
		if args == nil {
			return []any{}
		}
		return args
	}, Idempotent(), Inline())
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

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
	s := Stats{
		Requests: n.requests.Load(), RequestErrors: n.requestErrors.Load(),
		Steps: n.steps.Load(), StepErrors: n.stepErrors.Load(), Foreign: n.foreign.Load(),
		Inflight: n.inflight.Load(), Queued: n.queued.Load(), Planning: n.planning.Load(),
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
		return fmt.Errorf("%w: %s", ErrInvalidConfig, err.Message)
	}
	var o funcOpts
	for _, opt := range opts {
		opt(&o)
	}
	for _, l := range o.locs {
		if err := schema.CheckLoc(l); err != nil {
			return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, name, err.Message)
		}
	}
	call, err := wrap(name, f, o.params)
	if err != nil {
		return err
	}
	n.reg.put(&fn{name: name, locs: o.locs, idempotent: o.idempotent, retryAfter: o.retryAfter, inline: o.inline, call: call})
	n.changed()
	return nil
}

// Unregister stops offering name and announces the change. It reports
// whether the function was registered.
func (n *Node) Unregister(name string) bool {
	ok := n.reg.remove(name)
	if ok {
		n.changed()
	}
	return ok
}

// changed bumps the hello version, updates the node's own entry and, once
// started, announces the new hello.
func (n *Node) changed() {
	n.version.Add(1)
	if !n.started.Load() {
		return
	}
	h := n.hello()
	n.table.ApplyHello(h)
	n.publish(n.subj.Hello(), h)
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
		n.publish(n.subj.Hello(), n.hello())
		n.goOwned(func() {
			if f := n.follower.Load(); f != nil {
				f.Refresh(n.ctx)
			}
		})
	})
}

// refuteEvery bounds how often a node refutes claims about itself: a peer
// that keeps forging them makes it announce itself at most that often.
const refuteEvery = 50 * time.Millisecond

// refute answers gossip that claimed what this node did not say (a newer
// version of it, or its goodbye, see mesh.Follower): it announces its
// hello again, with a version above the claimed one, so that every peer,
// whatever it made of the claim, takes the node's own word again.
func (n *Node) refute(claimed int64) bool {
	if n.draining.Load() || !n.started.Load() {
		return false
	}
	now := time.Now().UnixNano()
	last := n.refuted.Load()
	if now-last < int64(refuteEvery) || !n.refuted.CompareAndSwap(last, now) {
		return false
	}
	for {
		v := n.version.Load()
		if claimed < v || claimed >= schema.MaxProtoInt || n.version.CompareAndSwap(v, claimed+1) {
			break
		}
	}
	h := n.hello()
	n.table.ApplyHello(h)
	n.publish(n.subj.Hello(), h)
	return true
}

// hello builds the node's current announcement.
func (n *Node) hello() *schema.Hello {
	urls := n.cfg.AdvertisedURLs
	if len(urls) == 0 {
		urls = n.nc.Servers()
	}
	urls = urls[:min(len(urls), schema.MaxURLs)] // peers keep no more
	meta := map[string]string{"mpreg": Version}
	if n.cfg.Name != "" {
		meta["name"] = n.cfg.Name
	}
	for k, v := range n.cfg.Meta {
		meta[k] = v
	}
	return &schema.Hello{
		Cluster:        n.cfg.Cluster,
		Node:           n.cfg.NodeID,
		Incarnation:    n.incarnation,
		Instance:       n.instance,
		Version:        n.version.Load(),
		Funs:           n.reg.funs(n.cfg.Locs),
		Codecs:         codec.SupportedTypes(),
		AdvertisedURLs: urls,
		Meta:           meta,
		Proto:          schema.Proto,
		Idempotent:     n.reg.idempotent(),
		RetryAfterMS:   n.reg.retryAfter(),
	}
}

// goodbye is the node's goodbye.
func (n *Node) goodbye() *schema.Goodbye {
	return &schema.Goodbye{Cluster: n.cfg.Cluster, Node: n.cfg.NodeID, Incarnation: n.incarnation, Instance: n.instance}
}

// publish sends a gossip message in JSON, which every peer reads.
func (n *Node) publish(subject string, v any) {
	data, err := codec.JSON.Encode(v)
	if err == nil {
		err = n.nc.PublishMsg(bus.NewMsg(subject, data, codec.JSONType, ""))
	}
	if err != nil {
		n.log.Warn("gossip publish failed", "subject", subject, "error", err)
	}
}

// goOwned runs f on a goroutine the node waits for on Close; it returns
// false, running nothing, once the node is closing.
func (n *Node) goOwned(f func()) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closing.Load() {
		return false
	}
	select {
	case n.handoff <- f: // an idle worker takes it
		return true
	default:
	}
	n.wg.Add(1)
	go n.worker(f)
	return true
}

// workerIdle is how long a worker goroutine waits for more work before it
// exits.
const workerIdle = 2 * time.Second

// worker runs f, then whatever goOwned hands over, until it has been idle
// for workerIdle or the node closes. Reusing goroutines keeps their grown
// stacks: a fresh goroutine per message grows (copies) its stack on every
// request, a large share of a call's CPU time.
func (n *Node) worker(f func()) {
	defer n.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-n.handoff:
		case <-idle.C:
			return
		case <-n.quit:
			return
		}
	}
}

// Start subscribes the node's subjects, announces it, learns the cluster and
// starts heartbeats. It returns once the node serves requests.
func (n *Node) Start(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: node already started", ErrInvalidConfig)
	}
	n.mu.Lock()
	n.status = n.nc.StatusChanged(nats.CLOSED)
	n.watched = make(chan struct{})
	go n.watchConn(n.status) // owned: Close ends it and waits for it
	n.mu.Unlock()
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
	req, err := mesh.NewRequester(n.nc)
	if err != nil {
		return fail(fmt.Errorf("node: %w", err))
	}
	n.execer.Requester = req
	es, err := sub(n.subj.Exec(n.cfg.NodeID), "", n.onExec)
	if err != nil {
		return fail(err)
	}
	n.execSub = es
	if _, err := sub(n.subj.Cancel(n.cfg.NodeID), "", n.onCancel); err != nil {
		return fail(err)
	}
	if _, err := sub(n.subj.CancelRequest(), "", n.onCancelRequest); err != nil {
		return fail(err)
	}
	if _, err := sub(n.subj.Info(n.cfg.NodeID), "", n.onHelloRequest); err != nil {
		return fail(err)
	}
	if _, err := sub(n.subj.Sync(), "", n.onHelloRequest); err != nil {
		return fail(err)
	}
	h := n.hello()
	n.table.ApplyHello(h)
	f, err := mesh.Follow(ctx, mesh.FollowConfig{
		Conn: n.nc, Subjects: n.subj, Cluster: n.cfg.Cluster, Table: n.table, Self: n.cfg.NodeID, SelfIncarnation: n.incarnation, SelfInstance: n.instance,
		SelfVersion: n.version.Load, Refute: n.refute,
		SyncQuiet: n.cfg.SyncQuiet, PruneInterval: n.cfg.HeartbeatInterval, Logger: n.log,
		LearnServers: n.nc.Opts.InProcessServer == nil, // an in-process connection has no pool to fail over in
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
	n.publish(n.subj.Hello(), n.hello())
	n.watchRoutes()
	rs, err := sub(n.subj.RPC(), bus.QueueGroup, n.onRPC)
	if err != nil {
		return fail(err)
	}
	n.rpcSub = rs
	if err := bus.Flush(ctx, n.nc); err != nil {
		return fail(fmt.Errorf("node: flush: %w", err))
	}
	n.goOwned(n.heartbeatLoop)
	n.log.Info("node started", "cluster", n.cfg.Cluster, "funs", len(h.Funs), "locs", n.cfg.Locs, "peers", len(n.table.Peers())-1)
	return nil
}

func (n *Node) heartbeatLoop() {
	iv := n.cfg.HeartbeatInterval
	stagger := time.NewTimer(time.Duration(time.Now().UnixNano() % int64(iv)))
	defer stagger.Stop()
	select {
	case <-n.quit:
		return
	case <-stagger.C:
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	reconnects := n.nc.Stats().Reconnects
	for {
		if r := n.nc.Stats().Reconnects; r != reconnects {
			// Peers may have forgotten this node while it was away.
			reconnects = r
			n.log.Info("re-announcing after reconnect", "reconnects", r)
			n.publish(n.subj.Hello(), n.hello())
		}
		n.publish(n.subj.Heartbeat(), &schema.Heartbeat{
			Cluster: n.cfg.Cluster, Node: n.cfg.NodeID, Incarnation: n.incarnation, Instance: n.instance,
			Version: n.version.Load(), Seq: n.seq.Add(1),
			Load: schema.Load{Inflight: n.inflight.Load(), Limit: int64(n.cfg.MaxInflight)},
		})
		select {
		case <-n.quit:
			return
		case <-t.C:
		}
	}
}

// Drain stops taking new work, announces goodbye, waits for the requests
// and steps in flight (until ctx is done), then closes the node. New exec
// requests meanwhile get SHUTTING_DOWN.
func (n *Node) Drain(ctx context.Context) error {
	if !n.draining.CompareAndSwap(false, true) {
		<-n.done
		return nil
	}
	var rpcClosed <-chan nats.SubStatus
	// Cut off from NATS nothing is in transit to this node and nothing it
	// sends gets out: drain the work, not the subscriptions.
	connected := n.nc.IsConnected()
	if n.started.Load() && !n.closing.Load() {
		// From here on sync and info are answered with the goodbye (see
		// onHelloRequest): a peer that joins now does not take the node
		// for a live one, and a process starting under its id hears that
		// it is still there (it holds the exec subject until it closes).
		// Heartbeats go on: they keep its steps in flight from being
		// declared lost by the peers that sent them.
		if n.rpcSub != nil && !connected {
			_ = n.rpcSub.Unsubscribe()
		} else if n.rpcSub != nil {
			// Drain, not Unsubscribe: requests the server sent before it
			// took the unsubscribe are served instead of dropped (their
			// callers would wait for their whole timeout).
			rpcClosed = n.rpcSub.StatusChanged(nats.SubscriptionClosed)
			if n.rpcSub.Drain() != nil {
				rpcClosed = nil
				_ = n.rpcSub.Unsubscribe()
			}
		}
		n.publish(n.subj.Goodbye(), n.goodbye())
		if connected {
			_ = n.nc.FlushTimeout(time.Second)
		}
		n.log.Info("node draining", "connected", connected)
	}
	var err error
	if rpcClosed != nil {
		select {
		case <-rpcClosed:
		case <-ctx.Done():
		}
	}
	select {
	case <-n.work.idle():
	case <-ctx.Done():
		err = fmt.Errorf("node: drain: %w", ctx.Err())
	}
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
		select {
		case <-n.work.idle():
		case <-ctx.Done():
			err = fmt.Errorf("node: drain: %w", ctx.Err())
		}
	}
	n.Close()
	return err
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
// the node's goroutines and is idempotent. The NATS connection stays open.
func (n *Node) Close() { n.shutdown(true, nil) }

// shutdown is Close; waitWatch is false when watchConn calls it, which
// must not wait for itself, with the cause that Err reports.
func (n *Node) shutdown(waitWatch bool, cause error) {
	n.mu.Lock()
	if !n.closing.CompareAndSwap(false, true) {
		n.mu.Unlock()
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
	n.mu.Unlock()
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
	n.follower.Load().Close()
	if n.nc.IsConnected() {
		// Make the server drop the node's interest before Close returns:
		// a request sent after Close then gets "no responders" at once
		// instead of being delivered to a dead subscription and waiting
		// for its timeout.
		_ = n.nc.FlushTimeout(time.Second)
	}
	close(n.quit)
	n.cancel()
	if r := n.execer.Requester; r != nil {
		r.Close()
	}
	n.wg.Wait()
	<-n.work.idle() // inline steps run on subscription goroutines, not in wg
	n.log.Info("node stopped")
	close(n.done)
}

// tracker counts work in flight and signals when none is left.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.zero = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.zero)
	}
	t.mu.Unlock()
}

// idle returns a channel closed when no work is in flight.
func (t *tracker) idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return closedChan
	}
	return t.zero
}
