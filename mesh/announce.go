package mesh

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/schema"
)

// Offer is what a node offers, the part of its hello that is not its
// identity (docs/PROTOCOL.md §7.1).
type Offer struct {
	Funs           map[string][]string
	Idempotent     []string
	RetryAfterMS   map[string]int64
	Retry          map[string]schema.RetryPolicy
	AdvertisedURLs []string
	Meta           map[string]string
}

// AnnounceConfig configures an Announcer. Zero fields take the defaults
// named in their comments.
type AnnounceConfig struct {
	Conn     *nats.Conn
	Subjects bus.Subjects
	Cluster  string
	Node     string
	// Offer returns what the node offers now.
	Offer func() Offer
	// Load returns the node's load, for heartbeats.
	Load func() schema.Load
	// Interval is the heartbeat period. Default 1 s.
	Interval time.Duration
	// Table, when set, is given each hello the Announcer makes: the node's
	// own entry in its view.
	Table *membership.Table
	// Received, when set, is told of each sync and info request the
	// Announcer answers ("sync" or "info"): for metrics. It must not block.
	Received func(kind string)
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Announcer is the speaking half of a node's membership (§7), beside the
// Follower, which listens: it owns the node's identity (incarnation,
// instance, version), answers sync and info, publishes hello, heartbeats
// and goodbye, and refutes claims about the node that it did not make.
type Announcer struct {
	cfg         AnnounceConfig
	log         *slog.Logger
	incarnation int64  // start time in ms (docs/PROTOCOL.md §7.1)
	instance    string // random, unique to this process: two starts in one ms differ
	version     atomic.Int64
	seq         atomic.Int64
	refuted     atomic.Int64 // unix ns of the last refute
	announced   atomic.Bool
	leaving     atomic.Bool

	mu      sync.Mutex // guards wg.Add against closing
	closing bool
	subs    []*nats.Subscription
	quit    chan struct{}
	wg      sync.WaitGroup
}

// NewAnnouncer returns the announcer of a new process: a fresh
// incarnation and instance, version 1.
func NewAnnouncer(cfg AnnounceConfig) *Announcer {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	a := &Announcer{cfg: cfg, log: cfg.Logger, incarnation: time.Now().UnixMilli(), instance: nuid.Next(), quit: make(chan struct{})}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.version.Store(1)
	return a
}

// Incarnation returns the process's incarnation.
func (a *Announcer) Incarnation() int64 { return a.incarnation }

// SetIncarnation sets the incarnation of an announcer that has announced
// nothing yet (tests use it to start two processes in one millisecond).
func (a *Announcer) SetIncarnation(inc int64) { a.incarnation = inc }

// Instance returns the process's instance nonce.
func (a *Announcer) Instance() string { return a.instance }

// Version returns the hello's current version.
func (a *Announcer) Version() int64 { return a.version.Load() }

// Leaving reports whether the node said goodbye.
func (a *Announcer) Leaving() bool { return a.leaving.Load() }

// Hello returns the node's current hello.
func (a *Announcer) Hello() *schema.Hello {
	o := a.cfg.Offer()
	return &schema.Hello{
		Kind:           schema.KindHello,
		Cluster:        a.cfg.Cluster,
		Node:           a.cfg.Node,
		Incarnation:    a.incarnation,
		Instance:       a.instance,
		Version:        a.version.Load(),
		Funs:           o.Funs,
		Codecs:         codec.SupportedTypes(),
		Bare:           codec.MsgPackType,
		AdvertisedURLs: o.AdvertisedURLs[:min(len(o.AdvertisedURLs), schema.MaxURLs)], // peers keep no more
		Meta:           o.Meta,
		Proto:          schema.Proto,
		Idempotent:     o.Idempotent,
		RetryAfterMS:   o.RetryAfterMS,
		Retry:          o.Retry,
	}
}

// Goodbye returns the node's goodbye.
func (a *Announcer) Goodbye() *schema.Goodbye {
	return &schema.Goodbye{Kind: schema.KindGoodbye, Cluster: a.cfg.Cluster, Node: a.cfg.Node, Incarnation: a.incarnation, Instance: a.instance}
}

// Answer subscribes the node's info subject and the cluster's sync subject,
// answered with the hello (the goodbye once leaving). A starting node
// answers before it syncs itself: a process starting at the same moment
// under the same id hears it.
func (a *Announcer) Answer() error {
	for _, subject := range []string{a.cfg.Subjects.Info(a.cfg.Node), a.cfg.Subjects.Sync()} {
		s, err := a.cfg.Conn.Subscribe(subject, a.onHelloRequest)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.subs = append(a.subs, s)
		a.mu.Unlock()
	}
	return nil
}

// onHelloRequest answers sync and info in the codec the requester accepts.
// A leaving node answers with its goodbye: a peer that missed the goodbye
// learns that the node is leaving, and a peer that checks a goodbye with
// the node (§7.5) believes it.
func (a *Announcer) onHelloRequest(m *nats.Msg) {
	if a.cfg.Received != nil {
		kind := "info"
		if m.Subject == a.cfg.Subjects.Sync() {
			kind = "sync"
		}
		a.cfg.Received(kind)
	}
	_, reply, _ := codec.Negotiate("", bus.Header(m, codec.HeaderAccept))
	var body any = a.Hello()
	if a.leaving.Load() {
		body = a.Goodbye()
	}
	if err := Respond(a.cfg.Conn, m, reply, body, nil); err != nil {
		a.log.Debug("hello reply failed", "error", err)
	}
}

// Announce applies the hello to the table and publishes it; from then on
// Changed and Refute publish too.
func (a *Announcer) Announce() {
	a.announced.Store(true)
	a.publishHello()
}

func (a *Announcer) publishHello() {
	h := a.Hello()
	if a.cfg.Table != nil {
		a.cfg.Table.ApplyHello(h)
	}
	if a.announced.Load() {
		a.publish(a.cfg.Subjects.Hello(), h)
	}
}

// Changed bumps the version after a change of what the node offers, and
// announces it once the node has announced itself.
func (a *Announcer) Changed() {
	a.version.Add(1)
	a.publishHello()
}

// refuteEvery bounds how often a node refutes a claim that needs no new
// version (a forged goodbye): a peer that keeps forging them makes it
// announce itself at most that often.
const refuteEvery = 50 * time.Millisecond

// Refute answers gossip that claimed what this node did not say (a newer
// version of it, or its goodbye: claimed < 0, see Follower.claim): it
// announces its hello again, with a version above the claimed one, so that
// every peer, whatever it made of the claim, takes the node's own word
// again. It reports whether it did: never while leaving; a goodbye at most
// once every 50 ms; a higher version always, as the version must pass it.
func (a *Announcer) Refute(claimed int64) bool {
	if a.leaving.Load() || !a.announced.Load() {
		return false
	}
	bumped := false
	for {
		v := a.version.Load()
		if claimed < v || claimed >= schema.MaxProtoInt {
			break
		}
		if a.version.CompareAndSwap(v, claimed+1) {
			bumped = true
			break
		}
	}
	now := time.Now().UnixNano()
	last := a.refuted.Load()
	if !bumped && (now-last < int64(refuteEvery) || !a.refuted.CompareAndSwap(last, now)) {
		return false
	}
	a.refuted.Store(now)
	a.publishHello()
	return true
}

// Leave publishes the goodbye; sync and info are answered with it from
// now on. Heartbeats go on until Close: they keep the steps the node still
// runs from being declared lost by the peers that sent them.
func (a *Announcer) Leave() {
	a.leaving.Store(true)
	a.publish(a.cfg.Subjects.Goodbye(), a.Goodbye())
}

// Heartbeats starts the heartbeat loop (random initial stagger), which
// re-announces the hello after each reconnect to NATS, until Close.
func (a *Announcer) Heartbeats() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return
	}
	a.wg.Add(1)
	go a.heartbeatLoop()
}

func (a *Announcer) heartbeatLoop() {
	defer a.wg.Done()
	iv := a.cfg.Interval
	stagger := time.NewTimer(time.Duration(time.Now().UnixNano() % int64(iv)))
	defer stagger.Stop()
	select {
	case <-a.quit:
		return
	case <-stagger.C:
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	reconnects := a.cfg.Conn.Stats().Reconnects
	for {
		if r := a.cfg.Conn.Stats().Reconnects; r != reconnects {
			// Peers may have forgotten this node while it was away.
			reconnects = r
			a.log.Info("re-announcing after reconnect", "reconnects", r)
			a.publishHello()
		}
		a.publish(a.cfg.Subjects.Heartbeat(), &schema.Heartbeat{
			Cluster: a.cfg.Cluster, Node: a.cfg.Node, Incarnation: a.incarnation, Instance: a.instance,
			Version: a.version.Load(), Seq: a.seq.Add(1), Load: a.cfg.Load(),
		})
		select {
		case <-a.quit:
			return
		case <-t.C:
		}
	}
}

// publish sends a gossip message in JSON, which every peer reads.
func (a *Announcer) publish(subject string, v any) {
	data, err := codec.JSON.Encode(v)
	if err == nil {
		err = a.cfg.Conn.PublishMsg(bus.NewMsg(subject, data, codec.JSONType, ""))
	}
	if err != nil {
		a.log.Warn("gossip publish failed", "subject", subject, "error", err)
	}
}

// DrainAnswers stops answering info and sync, after answering the
// requests NATS delivered before it took the unsubscribe (until ctx ends):
// a peer that asks a leaving node whether it leaves gets the goodbye or
// "no responders", never silence. A draining node calls it last.
func (a *Announcer) DrainAnswers(ctx context.Context) {
	a.mu.Lock()
	subs := a.subs
	a.mu.Unlock()
	for _, s := range subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if s.Drain() != nil {
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops answering and heart-beating, and waits for the heartbeat
// loop. It is idempotent.
func (a *Announcer) Close() {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return
	}
	a.closing = true
	subs := a.subs
	a.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	close(a.quit)
	a.wg.Wait()
}
