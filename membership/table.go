// Package membership holds the view of a cluster's nodes that every node and
// long-lived client keeps: who is alive, what each offers, and how loaded it
// is. It applies the merge rules of docs/PROTOCOL.md §7 and picks the node for a
// step by the routing rule of §8.
//
// It is plain Go: it takes decoded gossip messages and a clock, and imports
// nothing from NATS, so it can be tested and fuzzed on its own.
package membership

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// Config configures a Table. The zero value of each field takes the default
// named in its comment.
type Config struct {
	// Self is the id of the node (or client) holding the table; it wins ties
	// in Pick and is never declared dead by silence. Empty for a client.
	Self string
	// DeadAfter is how long a node may stay unheard before it is dead and no
	// longer routed to. Default 3 s (3 heartbeat intervals of 1 s).
	DeadAfter time.Duration
	// ForgetAfter is how long a node may stay unheard before Prune removes it.
	// Default 30 s.
	ForgetAfter time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// SelfLoad, when set, gives Self's own count of steps running or queued
	// (from any planner) for Pick; without it Self is scored by the steps
	// this table's owner has outstanding there.
	SelfLoad func() int64
	// MaxNodes bounds the nodes the table holds; a hello of a new node past
	// it is refused (ApplyHello reports no change). Default 10,000.
	MaxNodes int
}

// DefaultMaxNodes is the default of Config.MaxNodes.
const DefaultMaxNodes = 10_000

// Peer is a snapshot of one node as the table knows it.
type Peer struct {
	Hello     schema.Hello
	LastHeard time.Time
	FirstSeen time.Time
	Load      schema.Load
	// Outstanding is the number of steps this table's owner has in flight
	// at the node.
	Outstanding int64
	// Alive is false once the node was unheard for DeadAfter or marked dead.
	Alive bool
}

type entry struct {
	hello      schema.Hello
	lastHeard  time.Time
	firstSeen  time.Time
	load       schema.Load
	out        *inflight // shared by every entry of the node id
	markedDead bool
	silent     bool // Prune found it dead of silence (and said so)
	gone       bool // goodbye received for hello.Incarnation
}

// ErrNodeLost is the cancel cause given to tracked requests whose node was
// declared dead while they were in flight.
var ErrNodeLost = errors.New("membership: node lost while the request was in flight")

// Table is the membership view. It is safe for concurrent use.
type Table struct {
	cfg     Config
	mu      sync.RWMutex
	nodes   map[string]*entry
	byFun   map[string]map[string]*entry // function → the nodes offering it
	changed chan struct{}
	// inflight holds, per node id, the requests in flight there. It has its
	// own locks so that tracking a request never waits on mu.
	inflight sync.Map // node id → *inflight
	nextID   atomic.Uint64
}

// inflight counts and tracks the requests in flight at one node.
type inflight struct {
	n    atomic.Int64
	mu   sync.Mutex
	reqs map[uint64]tracked
}

// tracked is one request in flight: how to cancel it and when it was sent.
type tracked struct {
	cancel context.CancelCauseFunc
	at     time.Time
}

func (t *Table) inflightOf(node string) *inflight {
	if v, ok := t.inflight.Load(node); ok {
		return v.(*inflight)
	}
	v, _ := t.inflight.LoadOrStore(node, &inflight{})
	return v.(*inflight)
}

// New returns an empty table.
func New(cfg Config) *Table {
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 30 * time.Second
	}
	if cfg.ForgetAfter < cfg.DeadAfter {
		cfg.ForgetAfter = cfg.DeadAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxNodes <= 0 {
		cfg.MaxNodes = DefaultMaxNodes
	}
	return &Table{cfg: cfg, nodes: make(map[string]*entry), byFun: make(map[string]map[string]*entry), changed: make(chan struct{})}
}

// put stores e as its node's entry, replacing old (nil for a new node), and
// keeps the function index. t.mu is held for writing.
func (t *Table) put(id string, old, e *entry) {
	if old != nil {
		t.unindex(id, old)
	}
	t.nodes[id] = e
	for fun := range e.hello.Funs {
		m := t.byFun[fun]
		if m == nil {
			m = make(map[string]*entry)
			t.byFun[fun] = m
		}
		m[id] = e
	}
}

// remove deletes node id's entry e. t.mu is held for writing.
func (t *Table) remove(id string, e *entry) {
	t.unindex(id, e)
	delete(t.nodes, id)
}

func (t *Table) unindex(id string, e *entry) {
	for fun := range e.hello.Funs {
		if m := t.byFun[fun]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(t.byFun, fun)
			}
		}
	}
}

// Relation is how a gossip message's claim about a node compares with what
// the table holds.
type Relation int

// The relations Compare reports.
const (
	Unknown Relation = iota // the table holds no such node
	Older                   // an older incarnation or version than held
	Same                    // the process and version held
	Newer                   // a newer incarnation or version, or another process of the same incarnation
)

// Compare says how a message naming node's (incarnation, instance,
// version) compares with the hello the table holds. A version below zero,
// or a node that said goodbye, compares the process only.
func (t *Table) Compare(node string, incarnation int64, instance string, version int64) Relation {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.nodes[node]
	switch {
	case !ok:
		return Unknown
	case incarnation < e.hello.Incarnation:
		return Older
	case incarnation > e.hello.Incarnation:
		return Newer
	case otherInstance(e.hello.Instance, instance):
		return Newer
	case e.gone, version < 0:
		return Same
	case version < e.hello.Version:
		return Older
	case version > e.hello.Version:
		return Newer
	}
	return Same
}

// otherInstance reports whether two instance nonces name different
// processes (an empty one, from a peer that sends none, names any).
func otherInstance(a, b string) bool { return a != "" && b != "" && a != b }

// Changed returns a channel that is closed at the next change of the table
// (a node added, changed, dead, gone or forgotten).
func (t *Table) Changed() <-chan struct{} {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.changed
}

// notify must be called with t.mu held for writing.
func (t *Table) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// ApplyHello merges a hello. It reports whether the table changed.
func (t *Table) ApplyHello(h *schema.Hello) bool {
	changed, replaced := t.applyHello(h)
	if replaced != nil {
		// A new process took the id over: steps sent before it started
		// went to the old one, which will never answer them.
		replaced.lostBefore(time.UnixMilli(h.Incarnation).Add(-clockSkew))
	}
	return changed
}

// clockSkew is how far the clock of a restarted node's host may be ahead of
// ours: a step sent within clockSkew before its incarnation (its start
// time, by its own clock) may have gone to the new process, so it is not
// declared lost on the replacement (silence or its deadline ends it).
const clockSkew = 250 * time.Millisecond

// applyHello merges h under the lock; replaced is the in-flight set of the
// id when h starts a newer incarnation of a known node.
func (t *Table) applyHello(h *schema.Hello) (changed bool, replaced *inflight) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[h.Node]
	if ok {
		if h.Incarnation < e.hello.Incarnation {
			return false, nil
		}
		if h.Incarnation == e.hello.Incarnation {
			if e.gone {
				// The process is draining but still talks: keep the
				// tombstone until it falls silent, route nothing to it.
				e.lastHeard = now
				return false, nil
			}
			if h.Version < e.hello.Version {
				return false, nil
			}
			if h.Version == e.hello.Version {
				wasDead := !t.aliveLocked(e, now)
				e.lastHeard = now
				e.markedDead, e.silent = false, false
				if wasDead {
					t.notify()
				}
				return wasDead, nil
			}
		}
	}
	if !ok && len(t.nodes) >= t.cfg.MaxNodes {
		return false, nil
	}
	n := &entry{hello: *h, lastHeard: now, firstSeen: now, out: t.inflightOf(h.Node)}
	if ok && e.hello.Incarnation == h.Incarnation {
		n.firstSeen, n.load = e.firstSeen, e.load
	}
	if !ok {
		e = nil
	}
	t.put(h.Node, e, n)
	t.notify()
	if e != nil && h.Incarnation > e.hello.Incarnation && !e.gone {
		replaced = n.out // a draining process (goodbye) still answers its own
	}
	return true, replaced
}

// ApplyHeartbeat merges a heartbeat. It reports whether the sender's hello
// should be fetched (from node.<node>.info): the node is unknown, or the
// heartbeat carries a newer incarnation or version than the table holds.
func (t *Table) ApplyHeartbeat(hb *schema.Heartbeat) (needHello bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[hb.Node]
	if !ok {
		return true
	}
	switch {
	case hb.Incarnation < e.hello.Incarnation:
		return false
	case hb.Incarnation > e.hello.Incarnation, otherInstance(e.hello.Instance, hb.Instance):
		return true
	case e.gone:
		e.lastHeard = now // draining: see ApplyHello
		return false
	}
	wasDead := !t.aliveLocked(e, now)
	e.lastHeard = now
	e.markedDead, e.silent = false, false
	e.load = hb.Load
	if wasDead {
		t.notify()
	}
	return hb.Version > e.hello.Version
}

// ApplyGoodbye removes the incarnation named by g from routing. It reports
// whether the table changed.
func (t *Table) ApplyGoodbye(g *schema.Goodbye) bool {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[g.Node]
	if !ok || g.Incarnation < e.hello.Incarnation || (e.gone && g.Incarnation == e.hello.Incarnation) {
		return false
	}
	e.hello.Incarnation = g.Incarnation
	e.gone = true
	e.lastHeard = now
	t.notify()
	return true
}

// MarkDead stops routing to node until it is heard from again, as when its
// exec subject had no responders.
func (t *Table) MarkDead(node string) {
	t.mu.Lock()
	if e, ok := t.nodes[node]; ok && !e.markedDead {
		e.markedDead = true
		t.notify()
	}
	t.mu.Unlock()
	t.inflightOf(node).lost()
}

// Track counts a request in flight at node (as Outstanding) and registers
// cancel, which is called with ErrNodeLost if the node is declared dead
// (MarkDead, or silence noticed by Prune) before done is called.
func (t *Table) Track(node string, cancel context.CancelCauseFunc) (done func()) {
	l := t.inflightOf(node)
	id := t.nextID.Add(1)
	at := t.cfg.Now()
	l.add(1)
	l.mu.Lock()
	if l.reqs == nil {
		l.reqs = make(map[uint64]tracked)
	}
	l.reqs[id] = tracked{cancel, at}
	l.mu.Unlock()
	var once atomic.Bool
	return func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		l.mu.Lock()
		delete(l.reqs, id)
		l.mu.Unlock()
		l.add(-1)
	}
}

// add adds d to the count, never going below zero.
func (l *inflight) add(d int64) {
	for {
		v := l.n.Load()
		nv := max(v+d, 0)
		if l.n.CompareAndSwap(v, nv) {
			return
		}
	}
}

// lost cancels every tracked request with ErrNodeLost.
func (l *inflight) lost() { l.lostBefore(time.Time{}) }

// lostBefore cancels with ErrNodeLost the tracked requests sent before cut
// (every one when cut is zero).
func (l *inflight) lostBefore(cut time.Time) {
	var fire []context.CancelCauseFunc
	l.mu.Lock()
	for id, r := range l.reqs {
		if cut.IsZero() || r.at.Before(cut) {
			fire = append(fire, r.cancel)
			delete(l.reqs, id)
		}
	}
	l.mu.Unlock()
	for _, c := range fire {
		c(ErrNodeLost)
	}
}

// Pruned is what one Prune changed.
type Pruned struct {
	Silent    []string // nodes just declared dead of silence (unheard for DeadAfter)
	Forgotten []string // nodes removed (unheard for ForgetAfter)
}

// Prune forgets nodes unheard for ForgetAfter, cancels the tracked requests
// of nodes that went silent for DeadAfter, and reports the nodes that went
// silent since the last Prune and those it removed. Call it periodically.
func (t *Table) Prune() Pruned {
	now := t.cfg.Now()
	t.mu.Lock()
	var p Pruned
	var lost []*inflight
	for id, e := range t.nodes {
		if id != t.cfg.Self && now.Sub(e.lastHeard) > t.cfg.DeadAfter {
			lost = append(lost, e.out)
			if !e.silent {
				e.silent = true // dead of silence: a change
				if !e.gone && !e.markedDead {
					p.Silent = append(p.Silent, id)
				}
			}
		}
		if id != t.cfg.Self && now.Sub(e.lastHeard) > t.cfg.ForgetAfter {
			t.remove(id, e)
			if e.out.n.Load() == 0 {
				t.inflight.Delete(id)
			}
			p.Forgotten = append(p.Forgotten, id)
		}
	}
	if len(p.Forgotten) > 0 || len(p.Silent) > 0 {
		t.notify()
	}
	t.mu.Unlock()
	for _, l := range lost {
		l.lost()
	}
	slices.Sort(p.Silent)
	slices.Sort(p.Forgotten)
	return p
}

func (t *Table) aliveLocked(e *entry, now time.Time) bool {
	if e.gone || e.markedDead {
		return false
	}
	return e.hello.Node == t.cfg.Self || now.Sub(e.lastHeard) <= t.cfg.DeadAfter
}

// eligible reports whether e offers fun with every loc of locs.
func eligible(e *entry, fun string, locs []string) bool {
	have, ok := e.hello.Funs[fun]
	if !ok {
		return false
	}
	for _, l := range locs {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

// Pick returns the live node that offers fun with all of locs and has the
// fewest requests in flight (heartbeat load plus Outstanding), skipping the
// nodes in exclude. Ties go to Self, else to a random one. ok is false when
// no node qualifies.
func (t *Table) Pick(fun string, locs []string, exclude []string) (node string, ok bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	var best int64
	ties := 0
	for id, e := range t.byFun[fun] {
		if !t.aliveLocked(e, now) || !eligible(e, fun, locs) || slices.Contains(exclude, id) {
			continue
		}
		score := e.out.n.Load()
		switch {
		case id == t.cfg.Self && t.cfg.SelfLoad != nil:
			score = t.cfg.SelfLoad()
		case id != t.cfg.Self && e.load.Inflight > 0:
			score += e.load.Inflight
		}
		switch {
		case !ok || score < best:
			best, node, ties, ok = score, id, 1, true
		case score == best:
			if node == t.cfg.Self {
				continue
			}
			if id == t.cfg.Self {
				node, ties = id, 1
				continue
			}
			ties++
			if rand.IntN(ties) == 0 { // reservoir sampling: uniform among ties
				node = id
			}
		}
	}
	return node, ok
}

// Begin records a step sent to node; End records its end.
func (t *Table) Begin(node string) { t.addOutstanding(node, 1) }

// End records the end of a step counted by Begin.
func (t *Table) End(node string) { t.addOutstanding(node, -1) }

func (t *Table) addOutstanding(node string, d int64) {
	t.inflightOf(node).add(d)
}

func (t *Table) snapshot(e *entry, now time.Time) Peer {
	return Peer{
		Hello: e.hello, LastHeard: e.lastHeard, FirstSeen: e.firstSeen,
		Load: e.load, Outstanding: e.out.n.Load(), Alive: t.aliveLocked(e, now),
	}
}

// Get returns the node's snapshot.
func (t *Table) Get(node string) (Peer, bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.nodes[node]
	if !ok || e.gone {
		return Peer{}, false
	}
	return t.snapshot(e, now), true
}

// Hello returns the hello held for node, also when the node said goodbye
// (its steps in flight still need to know what it offers), and when it was
// first heard.
func (t *Table) Hello(node string) (h schema.Hello, firstSeen time.Time, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.nodes[node]
	if !ok {
		return schema.Hello{}, time.Time{}, false
	}
	return e.hello, e.firstSeen, true
}

// Peers returns the known nodes that have not said goodbye, sorted by id.
func (t *Table) Peers() []Peer {
	now := t.cfg.Now()
	t.mu.RLock()
	out := make([]Peer, 0, len(t.nodes))
	for _, e := range t.nodes {
		if !e.gone {
			out = append(out, t.snapshot(e, now))
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Hello.Node < out[j].Hello.Node })
	return out
}

// States counts the nodes the table lists: alive, draining (said goodbye
// and not yet forgotten) and dead (silent or marked dead, not yet
// forgotten).
func (t *Table) States() (alive, draining, dead int) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.nodes {
		switch {
		case e.gone:
			draining++
		case t.aliveLocked(e, now):
			alive++
		default:
			dead++
		}
	}
	return alive, draining, dead
}

// Eligible returns the ids of the live nodes that offer fun with all of locs,
// sorted.
func (t *Table) Eligible(fun string, locs []string) []string {
	now := t.cfg.Now()
	t.mu.RLock()
	var out []string
	for id, e := range t.byFun[fun] {
		if t.aliveLocked(e, now) && eligible(e, fun, locs) {
			out = append(out, id)
		}
	}
	t.mu.RUnlock()
	sort.Strings(out)
	return out
}

// AdvertisedURLs returns the union of the live nodes' advertised NATS URLs.
func (t *Table) AdvertisedURLs() []string {
	now := t.cfg.Now()
	t.mu.RLock()
	seen := map[string]bool{}
	var out []string
	for _, e := range t.nodes {
		if !t.aliveLocked(e, now) {
			continue
		}
		for _, u := range e.hello.AdvertisedURLs {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	t.mu.RUnlock()
	sort.Strings(out)
	return out
}
