package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/lograte"
	"github.com/mpreg/mpreg/membership"
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
	// SyncQuiet is how long a sync waits for further replies after the last
	// one. Default 200 ms.
	SyncQuiet time.Duration
	// SyncMax bounds a whole sync. Default 2 s.
	SyncMax time.Duration
	// PruneInterval is how often dead nodes are checked for forgetting.
	// Default 1 s.
	PruneInterval time.Duration
	// LearnServers adds the NATS URLs that peers advertise to Conn's server
	// pool (checked every PruneInterval), for fail-over.
	LearnServers bool
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Follower keeps a membership.Table current from the gossip subjects.
type Follower struct {
	cfg     FollowConfig
	log     *slog.Logger
	subs    []*nats.Subscription
	quit    chan struct{}
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool

	foreign atomic.Int64 // messages dropped for another cluster id
	twin    atomic.Int64 // incarnation of another process announcing Self
	logs    lograte.Limiter

	mu           sync.Mutex
	fetching     map[string]bool // nodes whose hello is being fetched
	twinOf       int64           // the twin last logged (see fromSelf)
	twinInstance string
	badProtos    map[string]bool // nodes logged for an unsupported proto
}

// Follow subscribes to the gossip subjects, learns the cluster with one
// sync, and keeps cfg.Table current until Close.
func Follow(ctx context.Context, cfg FollowConfig) (*Follower, error) {
	if cfg.Conn == nil || cfg.Table == nil {
		return nil, fmt.Errorf("%w: mesh: Conn and Table are required", bus.ErrConfig)
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
		cfg: cfg, quit: make(chan struct{}),
		fetching: map[string]bool{}, badProtos: map[string]bool{},
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
	go f.pruneLoop()
	return f, nil
}

// Twin returns the incarnation of another live process that announces this
// node's id (Self), or 0 when none was heard.
func (f *Follower) Twin() int64 { return f.twin.Load() }

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
	f.mu.Lock()
	first := f.twinOf != incarnation || f.twinInstance != instance
	f.twinOf, f.twinInstance = incarnation, instance
	f.mu.Unlock()
	f.twin.Store(incarnation)
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
	close(f.quit)
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

func (f *Follower) pruneLoop() {
	defer f.wg.Done()
	t := time.NewTicker(f.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-f.quit:
			return
		case <-t.C:
			p := f.cfg.Table.Prune()
			for _, id := range p.Silent {
				f.log.Info("node unheard too long; declared dead", "peer", id)
			}
			for _, id := range p.Forgotten {
				f.log.Info("dead node forgotten", "peer", id)
			}
			if f.cfg.LearnServers {
				f.learnServers()
			}
		}
	}
}

// learnServers adds the NATS URLs that live peers advertise to the
// connection's server pool, so that it can fail over to servers it was not
// told of and that NATS did not announce (PROTOCOL.md §7).
func (f *Follower) learnServers() {
	nc := f.cfg.Conn
	if !nc.IsConnected() {
		return // the pool is in use by the reconnect loop; try next tick
	}
	pool := nc.Servers()
	have := make(map[string]bool, len(pool))
	for _, u := range pool {
		have[hostOf(u)] = true
	}
	added := false
	for _, u := range f.cfg.Table.AdvertisedURLs() {
		h := hostOf(u)
		if h == "" || have[h] {
			continue
		}
		have[h] = true
		pool = append(pool, u)
		added = true
	}
	if !added {
		return
	}
	if err := nc.SetServerPool(pool); err != nil {
		f.log.Debug("advertised servers not added", "error", err)
		return
	}
	f.log.Info("learned NATS servers from peers", "servers", pool)
}

// hostOf returns the host:port of a NATS URL, or "" when it does not parse.
func hostOf(u string) string {
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	return p.Host
}

// Sync asks every node for its hello and applies the replies, returning once
// no reply came for SyncQuiet (or SyncMax passed).
func (f *Follower) Sync(ctx context.Context) error {
	nc := f.cfg.Conn
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("mesh: sync: %w", err)
	}
	defer sub.Unsubscribe()
	req := bus.NewMsg(f.cfg.Subjects.Sync(), nil, codec.JSONType, "")
	req.Reply = inbox
	if err := nc.PublishMsg(req); err != nil {
		return fmt.Errorf("mesh: sync: %w", err)
	}
	max := time.NewTimer(f.cfg.SyncMax)
	defer max.Stop()
	quiet := time.NewTimer(f.cfg.SyncQuiet)
	defer quiet.Stop()
	for {
		select {
		case m := <-ch:
			f.onInfo(m)
			quiet.Reset(f.cfg.SyncQuiet)
		case <-quiet.C:
			return nil
		case <-max.C:
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

// ApplyHello checks a decoded hello and merges it into the table. It
// reports whether the table changed.
func (f *Follower) ApplyHello(h *schema.Hello) bool {
	if !f.sameCluster(h.Cluster, h.Node, "hello") || f.fromSelf(h.Node, h.Incarnation, h.Instance, "hello") {
		return false
	}
	if h.Proto < schema.ProtoMin || h.Proto > schema.ProtoMax {
		f.mu.Lock()
		first := !f.badProtos[h.Node]
		f.badProtos[h.Node] = true
		f.mu.Unlock()
		if first {
			f.log.Warn("peer speaks an unsupported protocol version; ignored", "peer", h.Node, "proto", h.Proto)
		}
		return false
	}
	changed := f.cfg.Table.ApplyHello(h)
	if changed {
		f.log.Debug("peer hello", "peer", h.Node, "incarnation", h.Incarnation, "version", h.Version, "funs", len(h.Funs))
	}
	return changed
}

func (f *Follower) onHello(m *nats.Msg) {
	var h *schema.Hello
	if f.decode(m, "hello", func(t any) (err error) { h, err = schema.ParseHello(t); return }) {
		f.ApplyHello(h)
	}
}

// onInfo applies a reply to sync or node.<id>.info: a hello, or the
// goodbye of a node that is draining.
func (f *Follower) onInfo(m *nats.Msg) {
	var h *schema.Hello
	var g *schema.Goodbye
	ok := f.decode(m, "info reply", func(t any) (err error) {
		if m, _ := t.(map[string]any); m != nil && m["version"] == nil && m["funs"] == nil {
			g, err = schema.ParseGoodbye(t) // no hello keys: a goodbye
			return err
		}
		h, err = schema.ParseHello(t)
		return err
	})
	switch {
	case !ok:
	case h != nil:
		f.ApplyHello(h)
	case f.sameCluster(g.Cluster, g.Node, "goodbye") && !f.fromSelf(g.Node, g.Incarnation, g.Instance, "goodbye"):
		f.cfg.Table.ApplyGoodbye(g)
	}
}

func (f *Follower) onHeartbeat(m *nats.Msg) {
	var hb *schema.Heartbeat
	if !f.decode(m, "heartbeat", func(t any) (err error) { hb, err = schema.ParseHeartbeat(t); return }) {
		return
	}
	if !f.sameCluster(hb.Cluster, hb.Node, "heartbeat") || f.fromSelf(hb.Node, hb.Incarnation, hb.Instance, "heartbeat") {
		return
	}
	if f.cfg.Table.ApplyHeartbeat(hb) {
		f.fetchHello(hb.Node)
	}
}

func (f *Follower) onGoodbye(m *nats.Msg) {
	var g *schema.Goodbye
	if !f.decode(m, "goodbye", func(t any) (err error) { g, err = schema.ParseGoodbye(t); return }) {
		return
	}
	if !f.sameCluster(g.Cluster, g.Node, "goodbye") || g.Node == f.cfg.Self {
		return
	}
	if f.cfg.Table.ApplyGoodbye(g) {
		f.log.Info("peer said goodbye", "peer", g.Node)
	}
}

// fetchHello asks node.<node>.info for a node's hello, once at a time per
// node, on an owned goroutine.
func (f *Follower) fetchHello(node string) {
	f.mu.Lock()
	if f.fetching[node] {
		f.mu.Unlock()
		return
	}
	f.fetching[node] = true
	f.mu.Unlock()
	started := f.goOwned(func() {
		defer func() {
			f.mu.Lock()
			delete(f.fetching, node)
			f.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
		defer cancel()
		m, err := f.cfg.Conn.RequestMsgWithContext(ctx, bus.NewMsg(f.cfg.Subjects.Info(node), nil, codec.JSONType, ""))
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				f.log.Debug("info request failed", "peer", node, "error", err)
			}
			return
		}
		f.onInfo(m)
	})
	if !started {
		f.mu.Lock()
		delete(f.fetching, node)
		f.mu.Unlock()
	}
}
