package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/lograte"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// FollowConfig configures a Follower. Zero fields take the defaults named in
// their comments.
type FollowConfig struct {
	Conn     *nats.Conn
	Subjects bus.Subjects
	Cluster  string
	Table    *membership.Table
	// Self is the id of the node that owns the table; its own gossip is
	// skipped. Empty for a client.
	Self string
	// SelfIncarnation and SelfInstance name the owning node's process:
	// gossip under Self with another incarnation or instance comes from a
	// second process using the same node id (see Twin).
	SelfIncarnation int64
	SelfInstance    string
	// SelfVersion gives the owning node's current hello version, and
	// Refute makes it announce itself again, with a version above claimed
	// when claimed is not below it (-1 for a goodbye): gossip claimed
	// something of this node that it did not say (see Follower.claim).
	// Refute is called on a subscription's goroutine and must not block.
	// Both are unset for a client.
	SelfVersion func() int64
	Refute      func(claimed int64) (refuted bool)
	// SyncQuiet is how long a sync waits for further replies after the last
	// one. Default 200 ms.
	SyncQuiet time.Duration
	// SyncMax bounds a whole sync. Default 2 s.
	SyncMax time.Duration
	// PruneInterval is how often dead nodes are checked for forgetting.
	// Default 1 s.
	PruneInterval time.Duration
	// Received, when set, is told the kind of each gossip message that
	// arrives (hello, heartbeat, goodbye), before it is read: for metrics.
	// It is called on a subscription's goroutine and must not block.
	Received func(kind string)
	// LearnServers adds NATS URLs that peers advertise to Conn's server
	// pool, for fail-over (see serverPool).
	LearnServers bool
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Follower keeps a membership.Table current from the gossip subjects.
type Follower struct {
	cfg     FollowConfig
	log     *slog.Logger
	subs    []*nats.Subscription
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool

	foreign atomic.Int64 // messages dropped for another cluster id
	twin    twin
	logs    lograte.Limiter

	servers *serverPool // the NATS servers learned from peers; nil unless LearnServers

	refresh refresh

	mu        sync.Mutex
	fetching  map[string]*fetch // nodes whose hello is being fetched
	badProtos map[string]bool   // nodes logged for an unsupported proto
}

// twin is what a follower heard of another process announcing Self.
type twin struct {
	incarnation atomic.Int64 // its incarnation, 0 when none was heard

	mu       sync.Mutex
	logged   int64 // the incarnation and instance last logged (see fromSelf)
	instance string
}

// refresh is the state of Follower.Refresh.
type refresh struct {
	mu      sync.Mutex
	ended   time.Time     // when the last Refresh ended
	running chan struct{} // closed when the Refresh under way ends
}

// Follow subscribes to the gossip subjects, learns the cluster with one
// sync, and keeps cfg.Table current until Close.
func Follow(ctx context.Context, cfg FollowConfig) (*Follower, error) {
	if cfg.Conn == nil || cfg.Table == nil {
		return nil, fmt.Errorf("%w: Conn and Table are required", ErrInvalidConfig)
	}
	if cfg.SyncQuiet <= 0 {
		cfg.SyncQuiet = 200 * time.Millisecond
	}
	if cfg.SyncMax <= 0 {
		cfg.SyncMax = 2 * time.Second
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = time.Second
	}
	f := &Follower{
		cfg:      cfg,
		fetching: map[string]*fetch{}, badProtos: map[string]bool{},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.log = cfg.Logger
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for subj, h := range map[string]nats.MsgHandler{
		cfg.Subjects.Hello():     f.onHello,
		cfg.Subjects.Heartbeat(): f.onHeartbeat,
		cfg.Subjects.Goodbye():   f.onGoodbye,
	} {
		s, err := cfg.Conn.Subscribe(subj, h)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("mesh: subscribe %s: %w", subj, err)
		}
		f.subs = append(f.subs, s)
	}
	if err := bus.Flush(ctx, cfg.Conn); err != nil {
		f.Close()
		return nil, fmt.Errorf("mesh: flush: %w", err)
	}
	if err := f.Sync(ctx); err != nil {
		f.Close()
		return nil, err
	}
	f.wg.Add(1)
	go f.every(cfg.PruneInterval, f.prune)
	if cfg.LearnServers {
		f.servers = newServerPool(cfg.Conn, f.log)
		f.wg.Add(1)
		go f.every(learnEvery, func() { f.servers.turn(f.ctx, f.cfg.Table.AdvertisedURLs()) })
	}
	return f, nil
}

// Twin returns the incarnation of another live process that announces this
// node's id (Self), or 0 when none was heard.
func (f *Follower) Twin() int64 { return f.twin.incarnation.Load() }

// fromSelf reports whether gossip names Self, and notes (and logs once per
// process) a second process using the id: one with another incarnation or
// instance.
func (f *Follower) fromSelf(node string, incarnation int64, instance, what string) bool {
	if f.cfg.Self == "" || node != f.cfg.Self {
		return false
	}
	if incarnation == f.cfg.SelfIncarnation && instance == f.cfg.SelfInstance {
		return true
	}
	t := &f.twin
	t.mu.Lock()
	first := t.logged != incarnation || t.instance != instance
	t.logged, t.instance = incarnation, instance
	t.mu.Unlock()
	t.incarnation.Store(incarnation)
	if first {
		f.log.Error("another process announces this node's id: give every node its own --node-id",
			"kind", what, "peer", node, "its_incarnation", incarnation, "its_instance", instance,
			"our_incarnation", f.cfg.SelfIncarnation, "our_instance", f.cfg.SelfInstance)
	}
	return true
}

// Foreign returns how many gossip messages were dropped because they named
// another cluster.
func (f *Follower) Foreign() int64 { return f.foreign.Load() }

// Close unsubscribes and waits for the follower's goroutines. It is
// idempotent.
func (f *Follower) Close() {
	if f == nil || !f.closing.CompareAndSwap(false, true) {
		return
	}
	for _, s := range f.subs {
		_ = s.Unsubscribe()
	}
	f.cancel()
	f.wg.Wait()
}

// go runs fn on a goroutine owned by f, unless f is closing.
func (f *Follower) goOwned(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

// every runs fn every interval until the follower closes; the caller has
// added the goroutine to f.wg.
func (f *Follower) every(interval time.Duration, fn func()) {
	defer f.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// prune declares silent nodes dead and forgets the long silent.
func (f *Follower) prune() {
	p := f.cfg.Table.Prune()
	for _, id := range p.Silent {
		f.log.Info("node unheard too long; declared dead", "peer", id)
	}
	for _, id := range p.Forgotten {
		f.log.Info("dead node forgotten", "peer", id)
	}
}

// Sync asks every node for its hello and applies the replies, returning once
// no reply came for SyncQuiet (or SyncMax passed).
func (f *Follower) Sync(ctx context.Context) error {
	return f.sync(ctx, f.cfg.SyncQuiet, f.cfg.SyncMax)
}

// Refresh timings: a refresh is a sync that waits refreshQuiet after the
// last reply and at most refreshMax in all; a view refreshed less than
// refreshFresh ago is not refreshed again (a flood of requests that no
// node can take costs at most one sync per refreshFresh).
const (
	refreshQuiet = 20 * time.Millisecond
	refreshMax   = 100 * time.Millisecond
	refreshFresh = 50 * time.Millisecond
)

// Refresh syncs the view now, briefly, unless it was refreshed a moment
// ago, and reports whether it did: a planner that finds no node for a step
// asks before it answers NO_ROUTE, as its view may lag the cluster by up
// to a heartbeat (a node that just started, a NATS route that just
// formed). Concurrent calls share one sync.
func (f *Follower) Refresh(ctx context.Context) bool {
	r := &f.refresh
	r.mu.Lock()
	if time.Since(r.ended) < refreshFresh {
		r.mu.Unlock()
		return false
	}
	if r.running == nil {
		done := make(chan struct{})
		r.running = done
		if !f.goOwned(func() {
			_ = f.sync(f.ctx, refreshQuiet, refreshMax)
			r.mu.Lock()
			r.ended, r.running = time.Now(), nil
			r.mu.Unlock()
			close(done)
		}) {
			r.running = nil
			r.mu.Unlock()
			return false
		}
	}
	done := r.running
	r.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// Route is the planner.Router of a node or client that follows: the
// table's pick or, when the table knows no node for a step's first
// attempt, its pick after a Refresh. A NO_ROUTE is said only from a view
// just refreshed.
func (f *Follower) Route(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
	if node, ok := f.cfg.Table.Pick(fun, locs, exclude); ok || len(exclude) > 0 {
		return node, ok
	}
	f.Refresh(ctx)
	return f.cfg.Table.Pick(fun, locs, exclude)
}

var _ planner.Router = planner.RouterFunc((*Follower)(nil).Route)

func (f *Follower) sync(ctx context.Context, quietFor, maxFor time.Duration) error {
	nc := f.cfg.Conn
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("mesh: sync: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req := bus.NewMsg(f.cfg.Subjects.Sync(), nil, codec.JSONType, "")
	req.Reply = inbox
	if err := nc.PublishMsg(req); err != nil {
		return fmt.Errorf("mesh: sync: %w", err)
	}
	maxTimer := time.NewTimer(maxFor)
	defer maxTimer.Stop()
	quiet := time.NewTimer(quietFor)
	defer quiet.Stop()
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") != "" {
				continue // "no responders": nobody else is there
			}
			f.onInfo(m, "")
			quiet.Reset(quietFor)
		case <-quiet.C:
			return nil
		case <-maxTimer.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("mesh: sync: %w", ctx.Err())
		}
	}
}

func (f *Follower) decode(m *nats.Msg, what string, parse func(any) error) bool {
	tree, err := DecodeReply(m)
	if err == nil {
		err = parse(tree)
	}
	return f.readOK(m, what, err)
}

// readOK logs (rate-limited) and reports false when a gossip message did
// not read.
func (f *Follower) readOK(m *nats.Msg, what string, err error) bool {
	if err != nil {
		if ok, held := f.logs.Allow("bad gossip"); ok {
			f.log.Warn("bad gossip message dropped", "subject", m.Subject, "kind", what, "error", err, "dropped_since_last_log", held)
		}
		return false
	}
	return true
}

func (f *Follower) sameCluster(cluster, node, what string) bool {
	if cluster == f.cfg.Cluster {
		return true
	}
	f.foreign.Add(1)
	if ok, held := f.logs.Allow("foreign gossip"); ok {
		f.log.Warn("gossip from another cluster dropped", "kind", what, "cluster", cluster, "peer", node, "want_cluster", f.cfg.Cluster,
			"dropped_since_last_log", held)
	}
	return false
}

// ApplyHello checks a hello that came from the node itself (an answer to
// sync or info) and merges it into the table. It reports whether the table
// changed.
func (f *Follower) ApplyHello(h *schema.Hello) bool {
	if !f.sameCluster(h.Cluster, h.Node, "hello") || f.fromSelf(h.Node, h.Incarnation, h.Instance, "hello") {
		return false
	}
	if !f.supported(h) {
		return false
	}
	changed := f.cfg.Table.ApplyHello(h)
	if changed {
		f.log.Debug("peer hello", "peer", h.Node, "incarnation", h.Incarnation, "version", h.Version, "funs", len(h.Funs))
	}
	return changed
}

// supported reports whether h's protocol version is one this side speaks,
// logging once per node when it is not.
func (f *Follower) supported(h *schema.Hello) bool {
	if h.Proto >= schema.ProtoMin && h.Proto <= schema.ProtoMax {
		return true
	}
	f.mu.Lock()
	first := !f.badProtos[h.Node] && len(f.badProtos) < maxFetches*64
	if first {
		f.badProtos[h.Node] = true
	}
	f.mu.Unlock()
	if first {
		f.log.Warn("peer speaks an unsupported protocol version; ignored", "peer", h.Node, "proto", h.Proto)
	}
	return false
}

// onHello takes a broadcast hello as a claim, not a fact: anyone who may
// publish on the gossip subjects could have sent it. A hello that repeats
// what the table holds refreshes the node; one that would add a node, or
// change one, is checked with the node itself (its info subject), and only
// its answer is applied. So a forged hello adds no node, and takes no
// function away from a live one.
// received tells cfg.Received of a message of kind.
func (f *Follower) received(kind string) {
	if f.cfg.Received != nil {
		f.cfg.Received(kind)
	}
}

func (f *Follower) onHello(m *nats.Msg) {
	f.received("hello")
	var h *schema.Hello
	if !f.decode(m, "hello", func(t any) (err error) { h, err = schema.ParseHello(t); return }) {
		return
	}
	if !f.sameCluster(h.Cluster, h.Node, "hello") {
		return
	}
	if h.Node == f.cfg.Self {
		f.claim(h.Incarnation, h.Instance, h.Version, "hello")
		return
	}
	switch f.cfg.Table.Compare(h.Node, h.Incarnation, h.Instance, h.Version) {
	case membership.Same:
		if f.supported(h) {
			f.cfg.Table.ApplyHello(h) // the same hello: the node is heard
		}
	case membership.Unknown, membership.Newer:
		f.fetchHello(h.Node, nil)
	}
}

// onInfo applies a reply to sync or node.<id>.info, which the node sent
// itself: a hello, or the goodbye of a node that is draining. asked is the
// node whose info was requested ("" for sync): a reply naming another node
// is dropped. It reports what the reply was.
func (f *Follower) onInfo(m *nats.Msg, asked string) (h *schema.Hello, g *schema.Goodbye) {
	ok := f.decode(m, "info reply", func(t any) (err error) {
		if ReplyKind(t) == schema.KindGoodbye {
			g, err = schema.ParseGoodbye(t)
			return err
		}
		h, err = schema.ParseHello(t)
		return err
	})
	switch {
	case !ok:
		return nil, nil
	case h != nil && asked != "" && h.Node != asked, g != nil && asked != "" && g.Node != asked:
		return nil, nil
	case h != nil:
		f.ApplyHello(h)
	case f.sameCluster(g.Cluster, g.Node, "goodbye") && !f.fromSelf(g.Node, g.Incarnation, g.Instance, "goodbye"):
		f.cfg.Table.ApplyGoodbye(g)
	}
	return h, g
}

// ReplyKind is the kind of a decoded reply to sync or info: its kind key,
// or, from a peer that sends none, goodbye when it has neither version nor
// funs (docs/PROTOCOL.md §7.3).
func ReplyKind(tree any) string {
	m, _ := tree.(map[string]any)
	if k, ok := m["kind"].(string); ok {
		return k
	}
	if m["version"] == nil && m["funs"] == nil {
		return schema.KindGoodbye
	}
	return schema.KindHello
}

func (f *Follower) onHeartbeat(m *nats.Msg) {
	f.received("heartbeat")
	// Every node hears every heartbeat: read the common JSON form with
	// the scanner made for it (two to three times as fast as the general
	// reader), anything else with the general reader, neither with a tree.
	hb, ok := (*schema.Heartbeat)(nil), false
	if c, known := codec.ByType(bus.Header(m, codec.HeaderContentType)); known && c == codec.JSON {
		hb, ok = schema.ReadHeartbeatJSON(m.Data)
	}
	if !ok {
		var err error
		if hb, err = ReadReply(m, schema.ReadHeartbeat); !f.readOK(m, "heartbeat", err) {
			return
		}
	}
	if !f.sameCluster(hb.Cluster, hb.Node, "heartbeat") {
		return
	}
	if hb.Node == f.cfg.Self {
		f.claim(hb.Incarnation, hb.Instance, hb.Version, "heartbeat")
		return
	}
	if f.cfg.Table.ApplyHeartbeat(hb) {
		f.fetchHello(hb.Node, nil)
	}
}

// onGoodbye takes a broadcast goodbye as a claim too: the node is asked
// whether it is leaving. It is, when it answers its info with its goodbye
// (a draining node does), when it no longer answers at all, or when a new
// process answers under its id; a node that answers with the hello of the
// same process is not leaving, and the goodbye is dropped.
func (f *Follower) onGoodbye(m *nats.Msg) {
	f.received("goodbye")
	g, err := ReadReply(m, schema.ReadGoodbye)
	if !f.readOK(m, "goodbye", err) {
		return
	}
	if !f.sameCluster(g.Cluster, g.Node, "goodbye") {
		return
	}
	if g.Node == f.cfg.Self {
		f.claim(g.Incarnation, g.Instance, -1, "goodbye")
		return
	}
	switch f.cfg.Table.Compare(g.Node, g.Incarnation, g.Instance, -1) {
	case membership.Unknown, membership.Older:
		return
	}
	f.fetchHello(g.Node, func(_ *schema.Hello, gone bool) {
		if gone && f.cfg.Table.ApplyGoodbye(g) {
			f.log.Info("peer said goodbye", "peer", g.Node)
		}
	})
}

// claim handles gossip that names this node (Self), which it sends itself:
// its own messages come back to it. A message of another process under its
// id is a twin (see fromSelf). A claim of its own process that it did not
// make, a newer version or a goodbye while it runs, is refuted: the node
// announces itself again (cfg.Refute) so that peers that took the claim
// heal within a moment. version is -1 for a goodbye.
func (f *Follower) claim(incarnation int64, instance string, version int64, what string) {
	if f.cfg.Self == "" {
		return
	}
	if !f.fromSelf(f.cfg.Self, incarnation, instance, what) || f.cfg.Refute == nil {
		return
	}
	if incarnation != f.cfg.SelfIncarnation || otherInstance(instance, f.cfg.SelfInstance) {
		return // a twin: logged by fromSelf
	}
	if (version < 0 || version > f.cfg.SelfVersion()) && f.cfg.Refute(version) {
		if ok, held := f.logs.Allow("claim"); ok {
			f.log.Warn("gossip claimed about this node what it did not say; refuted",
				"kind", what, "claimed_version", version, "refuted_since_last_log", held)
		}
	}
}

// otherInstance reports whether two instance nonces name different
// processes (an empty one, from a peer that sends none, names any).
func otherInstance(a, b string) bool { return a != "" && b != "" && a != b }

// maxFetches bounds the info requests a follower has in flight: a flood of
// gossip naming made-up nodes costs at most that many requests at a time
// (the others are dropped; a real node is asked again at its next
// heartbeat).
const maxFetches = 16

// fetch is an info request in flight for one node, and what waits on it.
type fetch struct {
	again bool                               // ask once more when this answer is in
	done  []func(h *schema.Hello, gone bool) // told the answer
}

// maxWaiting bounds the callbacks waiting on one node's fetch.
const maxWaiting = 8

// fetchHello asks node.<node>.info for a node's hello, once at a time per
// node, on an owned goroutine, and applies the answer. done, when set, is
// told what the node said: its hello (nil when it answered none), and
// whether it is gone (it answered with its goodbye or, with "no
// responders", not at all, or another process answered under its id). A
// call with done while a fetch is in flight asks again once it is over, so
// that done learns what the node says after the call.
func (f *Follower) fetchHello(node string, done func(h *schema.Hello, gone bool)) {
	f.mu.Lock()
	if x := f.fetching[node]; x != nil {
		if done != nil && len(x.done) < maxWaiting {
			x.again = true
			x.done = append(x.done, done)
		}
		f.mu.Unlock()
		return
	}
	if len(f.fetching) >= maxFetches {
		f.mu.Unlock()
		return
	}
	x := &fetch{}
	if done != nil {
		x.done = append(x.done, done)
	}
	f.fetching[node] = x
	f.mu.Unlock()
	started := f.goOwned(func() {
		var told []func(h *schema.Hello, gone bool) // waited on this request
		f.mu.Lock()
		told, x.done, x.again = x.done, nil, false
		f.mu.Unlock()
		for {
			h, gone, answered := f.askInfo(node)
			if answered {
				for _, d := range told {
					d(h, gone)
				}
			}
			f.mu.Lock()
			if !x.again {
				delete(f.fetching, node)
				f.mu.Unlock()
				return
			}
			// Some came while the request was out: ask again for them.
			told, x.done, x.again = x.done, nil, false
			f.mu.Unlock()
		}
	})
	if !started {
		f.mu.Lock()
		delete(f.fetching, node)
		f.mu.Unlock()
	}
}

// askInfo requests node's info once and applies the answer. answered is
// false when there is no answer to act on (a timeout, or closing).
func (f *Follower) askInfo(node string) (h *schema.Hello, gone, answered bool) {
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	held, _ := f.cfg.Table.Get(node)
	m, err := f.cfg.Conn.RequestMsgWithContext(ctx, bus.NewMsg(f.cfg.Subjects.Info(node), nil, codec.JSONType, ""))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, true, true
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			f.log.Debug("info request failed", "peer", node, "error", err)
		}
		return nil, false, false
	}
	h, g := f.onInfo(m, node)
	if h == nil && g == nil {
		return nil, false, false
	}
	replaced := h != nil && (h.Incarnation != held.Hello.Incarnation || otherInstance(h.Instance, held.Hello.Instance))
	return h, g != nil || replaced, true
}
