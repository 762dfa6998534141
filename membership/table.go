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

// entry is one node. hello, firstSeen and the flags change only under the
// table's write lock; lastHeard and the load are atomics, so that a
// heartbeat of a live node is applied under the read lock, beside routing.
type entry struct {
	hello      schema.Hello
	firstSeen  time.Time
	lastHeard  atomic.Int64 // unix ns
	inflight   atomic.Int64 // load.inflight of the last heartbeat
	limit      atomic.Int64 // load.limit of the last heartbeat
	out        *inflight    // shared by every entry of the node id
	self       bool         // the table's own node
	markedDead bool
	silent     bool // Prune found it dead of silence (and said so)
	gone       bool // goodbye received for hello.Incarnation
}

func (e *entry) load() schema.Load {
	return schema.Load{Inflight: e.inflight.Load(), Limit: e.limit.Load()}
}

// funIndex lists the nodes offering one function, all of them and by loc,
// for routing to read only the nodes that may qualify.
type funIndex struct {
	all   []offer
	byLoc map[string][]offer
}

// offer is a node offering a function, with its locs for the function.
type offer struct {
	e    *entry
	locs []string
}

// has reports whether o has every loc of locs.
func (o offer) has(locs []string) bool {
	for _, l := range locs {
		if !slices.Contains(o.locs, l) {
			return false
		}
	}
	return true
}

// ErrNodeLost is the cancel cause given to tracked requests whose node was
// declared dead while they were in flight.
var ErrNodeLost = errors.New("membership: node lost while the request was in flight")

// Table is the membership view. It is safe for concurrent use.
type Table struct {
	cfg     Config
	mu      sync.RWMutex
	nodes   map[string]*entry
	byFun   map[string]*funIndex // function → the nodes offering it
	changed chan struct{}
	// inflight holds, per node id, the requests in flight there. It has its
	// own locks so that tracking a request never waits on mu.
	inflight sync.Map // node id → *inflight
	nextID   atomic.Uint64
	// watches are the Watch calls, by function, under their own lock:
	// registering one never waits on mu.
	wmu     sync.Mutex
	watches map[string]map[*watch]struct{}
}

// watch is one Watch call.
type watch struct {
	locs []string
	wake func()
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
	return &Table{cfg: cfg, nodes: make(map[string]*entry), byFun: make(map[string]*funIndex), changed: make(chan struct{}),
		watches: make(map[string]map[*watch]struct{})}
}

// put stores e as its node's entry, replacing old (nil for a new node), and
// keeps the function index. t.mu is held for writing.
func (t *Table) put(id string, old, e *entry) {
	if old != nil {
		t.unindex(id, old)
	}
	t.nodes[id] = e
	e.self = id == t.cfg.Self
	for fun, locs := range e.hello.Funs {
		fi := t.byFun[fun]
		if fi == nil {
			fi = &funIndex{byLoc: make(map[string][]offer)}
			t.byFun[fun] = fi
		}
		o := offer{e, locs}
		fi.all = append(fi.all, o)
		for i, l := range locs {
			if !slices.Contains(locs[:i], l) {
				fi.byLoc[l] = append(fi.byLoc[l], o)
			}
		}
	}
}

// remove deletes node id's entry e. t.mu is held for writing.
func (t *Table) remove(id string, e *entry) {
	t.unindex(id, e)
	delete(t.nodes, id)
}

// unindex takes e out of the function index. It reads each list e is in
// (linear in the nodes offering each of its functions), which only hellos,
// goodbyes' ends and Prune's forgetting do.
func (t *Table) unindex(_ string, e *entry) {
	for fun, locs := range e.hello.Funs {
		fi := t.byFun[fun]
		if fi == nil {
			continue
		}
		fi.all = without(fi.all, e)
		for _, l := range locs {
			if rest := without(fi.byLoc[l], e); len(rest) > 0 {
				fi.byLoc[l] = rest
			} else {
				delete(fi.byLoc, l)
			}
		}
		if len(fi.all) == 0 {
			delete(t.byFun, fun)
		}
	}
}

// without removes e from l, moving the last element into its place.
func without(l []offer, e *entry) []offer {
	for i, x := range l {
		if x.e == e {
			last := len(l) - 1
			l[i] = l[last]
			l[last] = offer{}
			return l[:last]
		}
	}
	return l
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

// Watch has wake called whenever a node that offers fun with every loc of
// locs is added, announces a new hello, or comes back to life: the changes
// after which Pick(fun, locs, nil) may find a node where it found none.
// Changes of nodes that offer something else call nothing. stop ends the
// watch.
//
// wake is called after the table's lock is released, on the goroutine
// that applied the change; it must be quick and must not block. It may be
// called once more while stop runs, or just after.
//
// A caller that found no node watches first and then picks again: a
// change between its first pick and Watch is seen by the second pick.
func (t *Table) Watch(fun string, locs []string, wake func()) (stop func()) {
	w := &watch{locs: slices.Clone(locs), wake: wake}
	t.wmu.Lock()
	ws := t.watches[fun]
	if ws == nil {
		ws = make(map[*watch]struct{})
		t.watches[fun] = ws
	}
	ws[w] = struct{}{}
	t.wmu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.wmu.Lock()
			delete(ws, w)
			if len(ws) == 0 { // ws is still t.watches[fun]: a set is dropped only when empty
				delete(t.watches, fun)
			}
			t.wmu.Unlock()
		})
	}
}

// Watching returns the number of Watch calls not yet stopped.
func (t *Table) Watching() int {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	n := 0
	for _, ws := range t.watches {
		n += len(ws)
	}
	return n
}

// woken returns the wake functions of the watches that the node offering
// funs serves. Call it with t.mu held and the functions after releasing it.
func (t *Table) woken(funs map[string][]string) []func() {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if len(t.watches) == 0 {
		return nil
	}
	var wake []func()
	for fun, locs := range funs {
		for w := range t.watches[fun] {
			if (offer{locs: locs}).has(w.locs) {
				wake = append(wake, w.wake)
			}
		}
	}
	return wake
}

// call calls each function of wake (see Watch).
func call(wake []func()) {
	for _, f := range wake {
		f()
	}
}

// ApplyHello merges a hello. It reports whether the table changed.
func (t *Table) ApplyHello(h *schema.Hello) bool {
	changed, replaced, wake := t.applyHello(h)
	call(wake)
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
// id when h starts a newer incarnation of a known node, and wake the
// watches to call (see Watch).
func (t *Table) applyHello(h *schema.Hello) (changed bool, replaced *inflight, wake []func()) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.nodes[h.Node]
	if ok {
		if h.Incarnation < e.hello.Incarnation {
			return false, nil, nil
		}
		if h.Incarnation == e.hello.Incarnation {
			if e.gone {
				// The process is draining but still talks: keep the
				// tombstone until it falls silent, route nothing to it.
				e.lastHeard.Store(now.UnixNano())
				return false, nil, nil
			}
			if h.Version < e.hello.Version {
				return false, nil, nil
			}
			if h.Version == e.hello.Version {
				wasDead := !t.aliveLocked(e, now)
				e.lastHeard.Store(now.UnixNano())
				e.markedDead, e.silent = false, false
				if wasDead {
					t.notify()
					wake = t.woken(e.hello.Funs)
				}
				return wasDead, nil, wake
			}
		}
	}
	if !ok && len(t.nodes) >= t.cfg.MaxNodes {
		return false, nil, nil
	}
	n := &entry{hello: *h, firstSeen: now, out: t.inflightOf(h.Node)}
	n.lastHeard.Store(now.UnixNano())
	if ok && e.hello.Incarnation == h.Incarnation {
		n.firstSeen = e.firstSeen
		n.inflight.Store(e.inflight.Load())
		n.limit.Store(e.limit.Load())
	}
	if !ok {
		e = nil
	}
	t.put(h.Node, e, n)
	t.notify()
	if e != nil && h.Incarnation > e.hello.Incarnation && !e.gone {
		replaced = n.out // a draining process (goodbye) still answers its own
	}
	return true, replaced, t.woken(n.hello.Funs)
}

// ApplyHeartbeat merges a heartbeat. It reports whether the sender's hello
// should be fetched (from node.<node>.info): the node is unknown, or the
// heartbeat carries a newer incarnation or version than the table holds.
//
// The heartbeat of a node the table holds as alive, the commonest message
// of a cluster, is applied under the read lock: it never waits for a
// routing decision, nor holds one up.
func (t *Table) ApplyHeartbeat(hb *schema.Heartbeat) (needHello bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	need, done, _ := t.heartbeatLocked(hb, now, false)
	t.mu.RUnlock()
	if done {
		return need
	}
	t.mu.Lock()
	need, _, wake := t.heartbeatLocked(hb, now, true)
	t.mu.Unlock()
	call(wake)
	return need
}

// heartbeatLocked applies hb with t.mu held, for reading unless write.
// Under the read lock it leaves to the caller (done false) a heartbeat
// that brings a dead node back, which changes the table; under the write
// lock such a heartbeat gives the watches to call (see Watch).
func (t *Table) heartbeatLocked(hb *schema.Heartbeat, now time.Time, write bool) (needHello, done bool, wake []func()) {
	e, ok := t.nodes[hb.Node]
	if !ok {
		return true, true, nil
	}
	switch {
	case hb.Incarnation < e.hello.Incarnation:
		return false, true, nil
	case hb.Incarnation > e.hello.Incarnation, otherInstance(e.hello.Instance, hb.Instance):
		return true, true, nil
	case e.gone:
		e.lastHeard.Store(now.UnixNano()) // draining: see ApplyHello
		return false, true, nil
	}
	wasDead := !t.aliveLocked(e, now)
	if wasDead && !write {
		return false, false, nil
	}
	e.lastHeard.Store(now.UnixNano())
	e.inflight.Store(hb.Load.Inflight)
	e.limit.Store(hb.Load.Limit)
	if wasDead {
		e.markedDead, e.silent = false, false
		t.notify()
		wake = t.woken(e.hello.Funs)
	}
	return hb.Version > e.hello.Version, true, wake
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
	e.lastHeard.Store(now.UnixNano())
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
// It looks under the read lock, and takes the write lock only when some
// node went silent or is to be forgotten.
func (t *Table) Prune() Pruned {
	now := t.cfg.Now()
	dead := now.Add(-t.cfg.DeadAfter).UnixNano()
	t.mu.RLock()
	due := false
	for _, e := range t.nodes {
		if !e.self && e.lastHeard.Load() < dead && (!e.silent || e.out.n.Load() > 0 || e.lastHeard.Load() < now.Add(-t.cfg.ForgetAfter).UnixNano()) {
			due = true
			break
		}
	}
	t.mu.RUnlock()
	if !due {
		return Pruned{}
	}
	forget := now.Add(-t.cfg.ForgetAfter).UnixNano()
	t.mu.Lock()
	var p Pruned
	var lost []*inflight
	for id, e := range t.nodes {
		heard := e.lastHeard.Load()
		if e.self || heard >= dead {
			continue
		}
		lost = append(lost, e.out)
		if !e.silent {
			e.silent = true // dead of silence: a change
			if !e.gone && !e.markedDead {
				p.Silent = append(p.Silent, id)
			}
		}
		if heard < forget {
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
	return e.self || now.UnixNano()-e.lastHeard.Load() <= int64(t.cfg.DeadAfter)
}

// pickSample is how many eligible nodes besides Self Pick compares: with
// more candidates it compares that many, taken in a row from a random
// place of the list, so that routing a step costs the same at any cluster
// size (docs/PROTOCOL.md §8).
const pickSample = 8

// candidates returns the shortest list of nodes that may offer fun with
// all of locs (every node on it offers fun; eligible still checks locs).
// ok is false when no node can. t.mu is held.
func (t *Table) candidates(fun string, locs []string) (list []offer, ok bool) {
	fi := t.byFun[fun]
	if fi == nil {
		return nil, false
	}
	list = fi.all
	for _, l := range locs {
		byLoc, ok := fi.byLoc[l]
		if !ok {
			return nil, false
		}
		if len(byLoc) < len(list) {
			list = byLoc
		}
	}
	return list, true
}

// Pick returns the live node that offers fun with all of locs and has the
// fewest requests in flight (heartbeat load plus Outstanding), skipping the
// nodes in exclude. Ties go to Self, else to a random one. ok is false when
// no node qualifies. When more than pickSample other nodes qualify, Pick
// compares Self and pickSample of them, consecutive from a random place.
func (t *Table) Pick(fun string, locs []string, exclude []string) (node string, ok bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	best, _ := t.pickLocked(fun, locs, exclude, now)
	if best == nil {
		return "", false
	}
	return best.hello.Node, true
}

// PickNear is Pick preferring near, the node that holds a step's inputs:
// near is picked when it qualifies (live, offering fun with all of locs,
// not in exclude) and is not overloaded compared to the node Pick would
// pick (see Near); otherwise that node is.
func (t *Table) PickNear(fun string, locs []string, exclude []string, near string) (node string, ok bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	best, least := t.pickLocked(fun, locs, exclude, now)
	if best == nil {
		return "", false
	}
	if e := t.nodes[near]; e != nil && e != best && !slices.Contains(exclude, near) && t.aliveLocked(e, now) {
		if l, offers := e.hello.Funs[fun]; offers && (offer{e, l}).has(locs) && Near(t.score(e), least) {
			return near, true
		}
	}
	return best.hello.Node, true
}

// Near reports whether a node holding a step's inputs, with load steps in
// flight, still takes the step when the least loaded eligible node has
// least: unless its load is over twice least plus two. Moving an input
// costs a fetch; a node that busy would cost a queue.
func Near(load, least int64) bool { return load <= 2*max(least, 0)+2 }

// pickLocked is Pick's choice, with its score; nil when no node
// qualifies. t.mu is held.
func (t *Table) pickLocked(fun string, locs []string, exclude []string, now time.Time) (*entry, int64) {
	list, found := t.candidates(fun, locs)
	if !found {
		return nil, 0
	}
	var p picker
	// consider offers o to p and reports whether it qualified.
	consider := func(o offer) bool {
		if !o.has(locs) || !t.aliveLocked(o.e, now) || slices.Contains(exclude, o.e.hello.Node) {
			return false
		}
		p.consider(o.e, t.score(o.e))
		return true
	}
	self := t.nodes[t.cfg.Self]
	if self != nil && self.self {
		if l, offers := self.hello.Funs[fun]; offers {
			consider(offer{self, l})
		}
	}
	start, seen := 0, 0
	if len(list) > pickSample {
		start = rand.IntN(len(list))
	}
	for k := range list {
		o := list[(start+k)%len(list)]
		if o.e.self {
			continue
		}
		if consider(o) {
			if seen++; seen >= pickSample {
				break
			}
		}
	}
	return p.best, p.score
}

// score is e's load as Pick weighs it: the steps this process has
// outstanding there, plus what e last said it runs (or, for this node
// itself, SelfLoad).
func (t *Table) score(e *entry) int64 {
	score := e.out.n.Load()
	switch {
	case e.self && t.cfg.SelfLoad != nil:
		score = t.cfg.SelfLoad()
	case !e.self:
		score += max(e.inflight.Load(), 0)
	}
	return score
}

// picker keeps the least loaded entry Pick has considered: this node on a
// tie, otherwise one of the tied entries uniformly at random.
type picker struct {
	best  *entry
	score int64
	ties  int
}

// consider compares e, of that score, with the best so far.
func (p *picker) consider(e *entry, score int64) {
	switch {
	case p.best == nil || score < p.score:
		p.score, p.best, p.ties = score, e, 1
	case score == p.score && p.best.self:
	case score == p.score && e.self:
		p.best, p.ties = e, 1
	case score == p.score:
		p.ties++
		if rand.IntN(p.ties) == 0 { // reservoir sampling: uniform among ties
			p.best = e
		}
	}
}

// Pinned returns the only live node that offers fun with all of locs; ok
// is false when none or several do.
func (t *Table) Pinned(fun string, locs []string) (node string, ok bool) {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	list, _ := t.candidates(fun, locs)
	for _, o := range list {
		if o.has(locs) && t.aliveLocked(o.e, now) {
			if ok {
				return "", false
			}
			node, ok = o.e.hello.Node, true
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
		Hello: e.hello, LastHeard: time.Unix(0, e.lastHeard.Load()), FirstSeen: e.firstSeen,
		Load: e.load(), Outstanding: e.out.n.Load(), Alive: t.aliveLocked(e, now),
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
	list, _ := t.candidates(fun, locs)
	for _, o := range list {
		if o.has(locs) && t.aliveLocked(o.e, now) {
			out = append(out, o.e.hello.Node)
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

// Policy returns the retry policy node advertises for fun (hello.retry,
// docs/PROTOCOL.md §8), also when the node said goodbye; nil when it
// advertises none or is not known.
func (t *Table) Policy(node, fun string) *schema.RetryPolicy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.nodes[node]
	if !ok {
		return nil
	}
	p, ok := e.hello.Retry[fun]
	if !ok {
		return nil
	}
	return &p
}
