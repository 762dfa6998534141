// Package chaos_test runs a cluster of real parts on loopback (three
// clustered nats-servers, four nodes, one following client), sends a steady
// stream of mixed requests, and breaks things while it runs: a node killed,
// a node drained, a NATS server stopped, the killed node restarted with the
// same id. It then checks that every request ended exactly once, in time,
// with a result or a typed error, and that routing converged.
// TestChaosDurable (durable_test.go) does the same for durable requests on a
// JetStream cluster.
//
// Run it with: go test -race -run 'TestChaos$' -v ./chaos/
package chaos_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Timings of the run.
const (
	heartbeat  = 100 * time.Millisecond
	deadAfter  = 300 * time.Millisecond
	reqTimeout = 2 * time.Second // timeout_ms of every request
	// runWait is how long the client waits for an rpc reply: a little past
	// the request's budget, so that the cluster's own TIMEOUT reply (with
	// partial results) normally arrives first.
	runWait = reqTimeout + 250*time.Millisecond
	// margin is how much past its timeout a request may take to end.
	margin     = time.Second
	workers    = 32
	pace       = 2 * time.Millisecond // one request offered per tick
	streamFor  = 6 * time.Second
	firstFault = time.Second
	faultGap   = 400 * time.Millisecond
	// convergeWithin bounds how many heartbeats the restarted node may send
	// before every live node is eligible everywhere. Counting heartbeats,
	// not milliseconds, keeps the check honest on a starved machine, where
	// heartbeats slow down with everything else.
	convergeWithin = 5
	// settle is how long after convergence requests may still fail; every
	// request started later must succeed.
	settle = 5 * heartbeat
	// stallTick is how often the stall monitor wakes up; a wake-up later by
	// stallNote or more is recorded as a stall of the test process.
	stallTick = 10 * time.Millisecond
	stallNote = 50 * time.Millisecond
	// stallExcuse is the longest stall of the whole process after which
	// the checks that assume an unfaulted part stay valid: past it, every
	// node's heartbeats were late by most of deadAfter.
	stallExcuse = 250 * time.Millisecond
)

// kind is the shape of one request of the stream.
type kind int

const (
	kindRun     kind = iota // one work step through the rpc subject
	kindCall                // one work step sent straight to a node (client.Call)
	kindChain               // a -> b -> c, each a work step
	kindFanout              // four work steps and an echos sink
	kindRefPath             // echo of a nested map, then work on a $ref path into it
	kindOnce                // a non-idempotent step, by Call or Run
	kindPinnedA             // work pinned to n1 (loc pinned-a) by Call
	kindPinnedB             // work pinned to n2 (loc pinned-b) by Call
	numKinds
)

var kindNames = [numKinds]string{"run", "call", "chain", "fanout", "refpath", "once", "pinned-a", "pinned-b"}

// kindWeights is the mix of the stream, in percent.
var kindWeights = [numKinds]int{15, 18, 15, 15, 10, 10, 12, 5}

func pickKind() kind {
	r := rand.IntN(100)
	for k, w := range kindWeights {
		if r < w {
			return kind(k)
		}
		r -= w
	}
	return kindRun
}

// workMS is a step's run time: mostly short, some medium, a few long
// enough to be in flight across a fault.
func workMS() int64 {
	switch r := rand.IntN(100); {
	case r < 75:
		return 1 + rand.Int64N(10)
	case r < 97:
		return 10 + rand.Int64N(30)
	default:
		return 250 + rand.Int64N(200)
	}
}

// expected reports whether a request of kind k may end with code under
// this run's faults: TIMEOUT (its reply was lost with a killed node or a
// stopped server), NODE_UNAVAILABLE (a non-idempotent step lost mid-run, or
// no other node could take a step), SHUTTING_DOWN (every node tried was
// draining), and NO_ROUTE only for calls pinned to n2 while it fails over.
// CANCELLED never is: nothing in this run cancels a request, so a step that
// ends CANCELLED was cancelled by mistake.
func expected(k kind, code string) bool {
	switch schema.Code(code) {
	case schema.CodeTimeout, schema.CodeNodeUnavailable, schema.CodeShuttingDown:
		return true
	case schema.CodeNoRoute:
		return k == kindPinnedB
	}
	return false
}

// record is one request of the stream.
type record struct {
	id       string
	kind     kind
	start    time.Time
	end      time.Time
	code     string   // "ok" or the error code
	msg      string   // the error's text
	tags     []string // the tags its work steps run with, once per step
	problem  string   // a broken guarantee (crossed reply, untyped error…)
	outcomes atomic.Int32
}

// ledger holds every request sent.
type ledger struct {
	mu   sync.Mutex
	recs []*record
	ids  map[string]bool
	dups []string
}

func (l *ledger) add(r *record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids[r.id] {
		l.dups = append(l.dups, r.id)
	}
	l.ids[r.id] = true
	l.recs = append(l.recs, r)
}

func (l *ledger) all() []*record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// execLog records where and when each tagged step ran; the functions
// write to it.
type execLog struct {
	mu    sync.Mutex
	runs  map[string][]string    // tag -> labels of the node incarnations that ran it
	times map[string][]time.Time // tag -> when each of those runs started
}

func newExecLog() *execLog {
	return &execLog{runs: map[string][]string{}, times: map[string][]time.Time{}}
}

func (x *execLog) add(tag, label string) {
	x.mu.Lock()
	x.runs[tag] = append(x.runs[tag], label)
	x.times[tag] = append(x.times[tag], time.Now())
	x.mu.Unlock()
}

// startedAt returns when each run of tag started.
func (x *execLog) startedAt(tag string) []time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.times[tag])
}

func (x *execLog) get(tag string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.runs[tag])
}

func (x *execLog) snapshot() map[string][]string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string][]string, len(x.runs))
	for k, v := range x.runs {
		out[k] = slices.Clone(v)
	}
	return out
}

// sleeper returns a function that logs its tag under label, sleeps ms
// (returning early when ctx ends) and returns tag.
func (x *execLog) sleeper(label string) func(ctx context.Context, ms int64, tag string) (string, error) {
	return func(ctx context.Context, ms int64, tag string) (string, error) {
		x.add(tag, label)
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return tag, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// killDialer dials TCP and can cut every connection it made at once, as the
// death of the process would, and refuses to dial again afterwards.
type killDialer struct {
	mu     sync.Mutex
	killed bool
	conns  []net.Conn
}

var errKilled = errors.New("chaos: process killed")

func (d *killDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed {
		return nil, errKilled
	}
	c, err := (&net.Dialer{Timeout: time.Second}).Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *killDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = true
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// stallMonitor records the times the test process itself was not run. On a
// shared machine the whole process, servers and nodes included, can be held
// up for longer than a heartbeat: a fault this test does not inject, after
// which even n1 looks dead to its peers for a while. Checks that assume an
// unfaulted part (calls pinned to n1 succeed, requests after settling
// succeed) do not hold a request against the code when it overlapped such a
// stall, and a request may exceed its time bound by the stalls it overlapped.
type stallMonitor struct {
	mu     sync.Mutex
	stalls []stall
}

// stall is a window in which the process was not run.
type stall struct {
	from time.Time
	d    time.Duration
}

func (m *stallMonitor) run(stop <-chan struct{}) {
	tk := time.NewTicker(stallTick)
	defer tk.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		now := time.Now()
		if late := now.Sub(last) - stallTick; late >= stallNote {
			m.mu.Lock()
			m.stalls = append(m.stalls, stall{last.Add(stallTick), late})
			m.mu.Unlock()
		}
		last = now
	}
}

// within returns the total and the longest stall time inside [from, to].
func (m *stallMonitor) within(from, to time.Time) (total, longest time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stalls {
		lo, hi := s.from, s.from.Add(s.d)
		if lo.Before(from) {
			lo = from
		}
		if hi.After(to) {
			hi = to
		}
		if d := hi.Sub(lo); d > 0 {
			total += d
			longest = max(longest, d)
		}
	}
	return total, longest
}

// summary returns how many stalls were recorded and the longest.
func (m *stallMonitor) summary() (n int, longest time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.stalls {
		longest = max(longest, s.d)
	}
	return len(m.stalls), longest
}

// startStallMonitor runs a stallMonitor until the test's cleanup.
func startStallMonitor(t *testing.T) *stallMonitor {
	m := &stallMonitor{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); m.run(stop) }()
	t.Cleanup(sync.OnceFunc(func() { close(stop); <-done }))
	return m
}

// logStalls logs the stalls the monitor recorded.
func (m *stallMonitor) log(t *testing.T, excused int) {
	t.Helper()
	n, worst := m.summary()
	t.Logf("  the test process stalled %d times for %v or more (worst %v); failures excused by a stall of %v or more: %d",
		n, stallNote, worst.Round(time.Millisecond), stallExcuse, excused)
}

// fault is one fault's time window, relative to the stream's start.
type fault struct {
	what       string
	start, end time.Duration
}

// faultLog injects faults and records when each was injected, relative
// to the stream's start t0.
type faultLog struct {
	t      *testing.T
	t0     time.Time
	faults []fault
}

// at waits until d after the stream's start.
func (fl *faultLog) at(d time.Duration) {
	tm := time.NewTimer(time.Until(fl.t0.Add(d)))
	defer tm.Stop()
	<-tm.C
}

// do injects a fault and returns when it was done.
func (fl *faultLog) do(what string, f func()) time.Duration {
	s := time.Since(fl.t0)
	f()
	e := time.Since(fl.t0)
	fl.faults = append(fl.faults, fault{what, s, e})
	fl.t.Logf("fault %-44s at %5dms, took %4dms", what, s.Milliseconds(), (e - s).Milliseconds())
	return e
}

// log lists the faults.
func (fl *faultLog) log() {
	for _, f := range fl.faults {
		fl.t.Logf("  fault at %5dms-%5dms: %s", f.start.Milliseconds(), f.end.Milliseconds(), f.what)
	}
}

// harness is the running cluster.
type harness struct {
	t       *testing.T
	servers []*bus.Server
	urls    []string
	log     *slog.Logger
	execs   *execLog
	// deadAfter is the nodes' Gossip.DeadAfter.
	deadAfter time.Duration
	// funcs registers the run's functions on a node (label names its
	// incarnation in the exec log).
	funcs func(n *node.Node, label string)
}

// newHarness starts n clustered nats-servers (by cluster, such as
// testcluster.Cluster) for nodes with funcs.
func newHarness(t *testing.T, cluster func(testing.TB, int) []*bus.Server, n int, level slog.Level, dead time.Duration,
	funcs func(h *harness, n *node.Node, label string)) *harness {
	h := &harness{t: t, log: testcluster.LevelLogger(t, level), execs: newExecLog(), deadAfter: dead}
	h.funcs = func(n *node.Node, label string) { funcs(h, n, label) }
	h.servers = cluster(t, n)
	for _, s := range h.servers {
		h.urls = append(h.urls, s.ClientURL())
	}
	return h
}

// connect opens a connection to the servers in the given order (no
// shuffling, so the first one is where it lands while it is up) with short
// reconnect delays.
func (h *harness) connect(name string, order []int, extra ...nats.Option) *nats.Conn {
	var urls []string
	for _, i := range order {
		urls = append(urls, h.urls[i])
	}
	return testcluster.Conn(h.t, "", testcluster.WithConnConfig(bus.ConnConfig{
		Servers: urls, Name: name,
		ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond,
		Options: append([]nats.Option{nats.DontRandomize()}, extra...),
		Logger:  h.log.With("conn", name),
	}))
}

// startNode starts node id (label names this incarnation in the exec log)
// on nc with the stream's functions.
func (h *harness) startNode(nc *nats.Conn, id, label string, locs ...string) *node.Node {
	cfg := node.Config{
		NodeID: id, Locs: append(locs, "node-"+id),
		Gossip: node.Gossip{HeartbeatInterval: heartbeat, DeadAfter: h.deadAfter, SyncQuiet: 50 * time.Millisecond},
		Hooks:  node.Hooks{Logger: h.log.With("test_node", label)},
	}
	return testcluster.StartNode(h.t, nc, cfg, func(n *node.Node) { h.funcs(n, label) })
}

// workFuncs registers the stream's functions of TestChaos: work
// (idempotent) and once (not), both sleepers.
func workFuncs(h *harness, n *node.Node, label string) {
	require.NoError(h.t, n.Register("work", h.execs.sleeper(label), node.WithParams("ms", "tag"), node.Idempotent()))
	require.NoError(h.t, n.Register("once", h.execs.sleeper(label), node.WithParams("ms", "tag")))
}

// proc is a node started as a process of its own: on its own connection,
// dialed through a killDialer, so that it can die abruptly.
type proc struct {
	id, label string
	dial      *killDialer
	nc        *nats.Conn
	n         *node.Node
	closed    chan struct{} // closed once the node and its connection are, after kill
}

// startProc starts node id (label names this incarnation) as a process
// connected to the servers in order.
func (h *harness) startProc(id, label string, order []int, locs ...string) *proc {
	p := &proc{id: id, label: label, dial: &killDialer{}, closed: make(chan struct{})}
	p.nc = h.connect(label, order, nats.SetCustomDialer(p.dial))
	p.n = h.startNode(p.nc, id, label, locs...)
	return p
}

// kill ends the process as its death would: its sockets cut at once (no
// goodbye, no drain, no reply to what it runs, no lease released). The
// node and its connection are then closed on a goroutine, as the
// process's remains: closing waits for what the node was doing, which a
// dead process would not; closed says when that is over.
func (p *proc) kill() {
	p.dial.kill()
	go func() {
		defer close(p.closed)
		p.n.Close()
		p.nc.Close()
	}()
}

// converged reports nil once every table sees exactly want as eligible for
// work, with node n3 at incarnation inc3.
func converged(tables map[string]*membership.Table, want []string, inc3 int64) error {
	for name, tb := range tables {
		if got := tb.Eligible("work", nil); !slices.Equal(got, want) {
			return fmt.Errorf("%s: eligible %v, want %v", name, got, want)
		}
		p, ok := tb.Get("n3")
		if !ok || p.Hello.Incarnation != inc3 {
			return fmt.Errorf("%s: n3 at incarnation %d (listed %v, alive %v, last heard %v ago), want %d",
				name, p.Hello.Incarnation, ok, p.Alive, time.Since(p.LastHeard).Round(time.Millisecond), inc3)
		}
	}
	return nil
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run takes several seconds")
	}
	h := newHarness(t, testcluster.Cluster, 3, slog.LevelInfo, deadAfter, workFuncs)

	// n1 on server 1 (never stopped), n4 on server 1, n3 on server 2, n2 on
	// server 3 (stopped: n2 fails over). The client is on server 2.
	nc1 := h.connect("n1", []int{0, 1, 2})
	nc2 := h.connect("n2", []int{2, 0, 1})
	nc4 := h.connect("n4", []int{0, 1, 2})
	n1 := h.startNode(nc1, "n1", "n1", "pinned-a")
	n2 := h.startNode(nc2, "n2", "n2", "pinned-b")
	p3 := h.startProc("n3", "n3", []int{1, 0, 2})
	n3 := p3.n
	n4 := h.startNode(nc4, "n4", "n4")
	require.Equal(t, h.servers[0].NATS().ID(), nc1.ConnectedServerId(), "n1 must sit on server 1")
	require.Equal(t, h.servers[2].NATS().ID(), nc2.ConnectedServerId(), "n2 must sit on server 3")

	ncC := h.connect("client", []int{1, 2})
	require.Equal(t, h.servers[1].NATS().ID(), ncC.ConnectedServerId(), "the client must sit on server 2")
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	c, err := client.Connect(ctx, client.Config{Conn: ncC, SyncQuiet: 50 * time.Millisecond, Logger: h.log.With("conn", "client")})
	require.NoError(t, err)
	t.Cleanup(c.Close)

	all := []string{"n1", "n2", "n3", "n4"}
	testcluster.WaitFor(t, "every node eligible everywhere", func() error {
		for name, tb := range map[string]*membership.Table{"client": c.Table(), "n1": n1.Table(), "n2": n2.Table(), "n3": n3.Table(), "n4": n4.Table()} {
			if got := tb.Eligible("work", nil); !slices.Equal(got, all) {
				return fmt.Errorf("%s: eligible %v", name, got)
			}
		}
		return nil
	})
	// Interest in each node's exec subject has reached every server once a
	// call pinned to it succeeds from the client's server.
	for _, id := range all {
		h.burst(c, id, 3)
	}

	// The stream: a ticker offers one request per tick to whichever of the
	// workers is free; a tick with none free is skipped.
	var (
		led     = &ledger{ids: map[string]bool{}}
		seq     atomic.Int64
		skipped atomic.Int64
		tokens  = make(chan struct{})
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	stalls := startStallMonitor(t)
	t0 := time.Now()
	stopStream := sync.OnceFunc(func() { close(stop) })
	wg.Add(1)
	go func() { // the pacer
		defer wg.Done()
		tk := time.NewTicker(pace)
		defer tk.Stop()
		end := time.NewTimer(streamFor)
		defer end.Stop()
		for {
			select {
			case <-stop:
				return
			case <-end.C:
				stopStream()
				return
			case <-tk.C:
				select {
				case tokens <- struct{}{}:
				default:
					skipped.Add(1)
				}
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				r := &record{id: fmt.Sprintf("chaos-%05d", seq.Add(1)), kind: pickKind(), start: time.Now()}
				led.add(r)
				r.code, r.msg, r.problem = h.send(c, r)
				r.end = time.Now()
				r.outcomes.Add(1)
			}
		}()
	}
	streamDone := make(chan struct{})
	go func() { wg.Wait(); close(streamDone) }()
	// A failed assertion below ends the stream before the cluster is torn down.
	t.Cleanup(func() { stopStream(); <-streamDone })

	fl := &faultLog{t: t, t0: t0}
	at, do := fl.at, fl.do

	// Count the heartbeats of n3's next incarnation as they cross the bus.
	old3, _ := n3.Table().Get("n3")
	var beats3 atomic.Int64
	watch := testcluster.Conn(t, h.urls[0])
	_, err = watch.Subscribe(bus.NewSubjects("", "default").Heartbeat(), func(m *nats.Msg) {
		var hb schema.Heartbeat
		if json.Unmarshal(m.Data, &hb) == nil && hb.Node == "n3" && hb.Incarnation > old3.Hello.Incarnation {
			beats3.Add(1)
		}
	})
	require.NoError(t, err)

	at(firstFault)
	next := do("kill n3 (socket cut, no goodbye, no drain)", func() { p3.kill(); <-p3.closed })
	at(next + faultGap)
	next = do("drain n4 (goodbye, finish in-flight, close)", func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		require.NoError(t, n4.Drain(dctx))
		nc4.Close()
	})
	at(next + faultGap)
	next = do("stop nats-server 3 (n2 fails over)", func() { h.servers[2].Shutdown() })
	at(next + faultGap)
	var n3b *node.Node
	lastFault := do("restart n3 (same id, new incarnation)", func() {
		n3b = h.startNode(h.connect("n3-restarted", []int{0, 1, 2}), "n3", "n3'")
	})
	self3, _ := n3b.Table().Get("n3")
	live := []string{"n1", "n2", "n3"}
	tables := map[string]*membership.Table{"client": c.Table(), "n1": n1.Table(), "n2": n2.Table(), "n3'": n3b.Table()}
	var states []string
	testcluster.WaitFor(t, "routing to converge", func() error {
		err := converged(tables, live, self3.Hello.Incarnation)
		if err != nil && len(states) < 200 {
			states = append(states, fmt.Sprintf("%5dms %v", time.Since(t0).Milliseconds(), err))
		}
		return err
	})
	convergedAt, beats := time.Since(t0), beats3.Load()
	t.Logf("routing converged %dms after the restart of n3 (at %dms), after %d of its heartbeats: eligible %v everywhere",
		(convergedAt - lastFault).Milliseconds(), convergedAt.Milliseconds(), beats, live)
	if beats > convergeWithin {
		for _, s := range states {
			t.Log(s)
		}
	}
	require.LessOrEqual(t, beats, int64(convergeWithin), "routing must converge within a few heartbeats")
	testcluster.WaitFor(t, "n2 to fail over", func() error {
		if !nc2.IsConnected() || nc2.ConnectedServerId() == h.servers[2].NATS().ID() {
			return fmt.Errorf("n2 is %s on server %s", nc2.Status(), nc2.ConnectedServerId())
		}
		return nil
	})
	for name, nc := range map[string]*nats.Conn{"n1": nc1, "client": ncC} {
		require.Zero(t, nc.Stats().Reconnects, "%s's server stayed up: it never reconnected", name)
	}

	// Wait for the stream to end; every request must end by its timeout plus
	// the margin.
	select {
	case <-streamDone:
	case <-time.After(time.Until(t0.Add(streamFor + runWait + margin))):
		var stuck []string
		for _, r := range led.all() {
			if r.outcomes.Load() == 0 {
				stuck = append(stuck, fmt.Sprintf("%s(%s, started %dms)", r.id, kindNames[r.kind], r.start.Sub(t0).Milliseconds()))
			}
		}
		t.Fatalf("requests never ended: %v", stuck)
	}

	h.report(t0, led, fl, stalls, convergedAt+settle, skipped.Load())

	// After the faults every live node takes calls pinned to it, straight
	// and through the rpc subject (planned by whichever node takes it).
	for _, id := range live {
		h.burst(c, id, 20)
	}
}

// burst sends n calls pinned to node id (loc node-<id>) by Call and n by
// Run, concurrently, and requires every one to succeed on that node.
func (h *harness) burst(c *client.Client, id string, n int) {
	h.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("burst-%s-%d-%d", id, time.Now().UnixNano(), i)
			ctx, cancel := context.WithTimeout(context.Background(), runWait)
			defer cancel()
			var got any
			if i%2 == 0 {
				v, err := c.Call(ctx, "work", []any{1, tag}, client.WithLocs("node-"+id), client.WithTimeout(reqTimeout))
				if err != nil {
					errs <- fmt.Errorf("call pinned to %s: %w", id, err)
					return
				}
				got = v
			} else {
				resp, err := c.Run(ctx, &schema.Request{ID: tag, TimeoutMS: reqTimeout.Milliseconds(), Cmds: []schema.Command{
					{Name: "a", Fun: "work", Args: []any{1, tag}, Locs: []string{"node-" + id}}}})
				if err != nil {
					errs <- fmt.Errorf("run pinned to %s: %w", id, err)
					return
				}
				got = resp.Results["a"]
			}
			if got != tag {
				errs <- fmt.Errorf("pinned to %s: got %v, want %s", id, got, tag)
				return
			}
			if ran := h.execs.get(tag); len(ran) != 1 || strings.TrimSuffix(ran[0], "'") != id {
				errs <- fmt.Errorf("pinned to %s: ran on %v", id, ran)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Error(err)
	}
	if h.t.Failed() {
		h.t.FailNow()
	}
}

// send runs one request of the stream and returns its outcome ("ok" or the
// error code), the error's text, and a broken guarantee, if any.
func (h *harness) send(c *client.Client, r *record) (code, msg, problem string) {
	ms, id := workMS(), r.id
	r.tags = []string{id}
	switch {
	case r.kind == kindCall:
		return h.call(c, "work", id, ms)
	case r.kind == kindPinnedA:
		return h.call(c, "work", id, ms, "pinned-a")
	case r.kind == kindPinnedB:
		return h.call(c, "work", id, ms, "pinned-b")
	case r.kind == kindOnce && rand.IntN(2) == 0:
		return h.call(c, "once", id, ms)
	}
	req := &schema.Request{ID: id, TimeoutMS: reqTimeout.Milliseconds()}
	var want map[string]any
	switch r.kind {
	case kindRun, kindOnce:
		fun := "work"
		if r.kind == kindOnce {
			fun = "once"
		}
		req.Cmds = []schema.Command{{Name: "a", Fun: fun, Args: []any{ms, id + "/a"}}}
		r.tags = []string{id + "/a"}
		want = map[string]any{"a": id + "/a"}
	case kindChain:
		// Each step takes the previous one's result as its tag, so the
		// three steps run one after the other and all return id/a.
		req.Cmds = []schema.Command{
			{Name: "a", Fun: "work", Args: []any{ms, id + "/a"}},
			{Name: "b", Fun: "work", Args: []any{ms, "a"}},
			{Name: "c", Fun: "work", Args: []any{ms, "b"}},
		}
		want = map[string]any{"c": id + "/a"}
		r.tags = []string{id + "/a", id + "/a", id + "/a"}
	case kindFanout:
		var sink []any
		r.tags = nil
		for i := range 4 {
			name := fmt.Sprintf("f%d", i)
			req.Cmds = append(req.Cmds, schema.Command{Name: name, Fun: "work", Args: []any{ms, id + "/" + name}})
			sink = append(sink, name)
			r.tags = append(r.tags, id+"/"+name)
		}
		req.Cmds = append(req.Cmds, schema.Command{Name: "s", Fun: "echos", Args: sink})
		want = map[string]any{"s": []any{id + "/f0", id + "/f1", id + "/f2", id + "/f3"}}
	case kindRefPath:
		req.Cmds = []schema.Command{
			{Name: "a", Fun: "echo", Args: []any{map[string]any{"k": []any{id, map[string]any{"x": id + "/x"}}}}},
			{Name: "b", Fun: "work", Args: []any{ms, map[string]any{"$ref": "a", "path": "/k/1/x"}}},
		}
		want = map[string]any{"b": id + "/x"}
		r.tags = []string{id + "/x"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runWait)
	defer cancel()
	resp, err := c.Run(ctx, req)
	code, msg, problem = typed(err)
	if resp != nil {
		if resp.ID != id {
			return code, msg, fmt.Sprintf("reply id %q for request %q", resp.ID, id)
		}
		for name, v := range resp.Results { // partial results too
			if !strings.Contains(fmt.Sprint(v), id) {
				return code, msg, fmt.Sprintf("result %s=%v is not this request's", name, v)
			}
		}
	}
	if err == nil && !equal(resp.Results, want) {
		problem = fmt.Sprintf("results %v, want %v", resp.Results, want)
	}
	return code, msg, problem
}

// call sends one work or once step with client.Call (one hop, routed by the
// client's own table) and checks that the tag comes back.
func (h *harness) call(c *client.Client, fun, tag string, ms int64, locs ...string) (code, msg, problem string) {
	v, err := c.Call(context.Background(), fun, []any{ms, tag}, client.WithLocs(locs...), client.WithTimeout(reqTimeout))
	if err != nil {
		return typed(err)
	}
	if v != tag {
		return "ok", "", fmt.Sprintf("result %v, want %s", v, tag)
	}
	return "ok", "", ""
}

// typed returns the error's PROTOCOL §5 code and text, or a problem when it
// has no valid code.
func typed(err error) (code, msg, problem string) {
	if err == nil {
		return "ok", "", ""
	}
	var e *schema.Error
	if !errors.As(err, &e) {
		return "UNTYPED", err.Error(), fmt.Sprintf("error without a code: %v", err)
	}
	if !e.Code.Valid() {
		return string(e.Code), err.Error(), fmt.Sprintf("unknown code %q: %v", e.Code, err)
	}
	return string(e.Code), err.Error(), ""
}

func equal(got, want map[string]any) bool {
	return fmt.Sprint(got) == fmt.Sprint(want) // maps print sorted by key
}

// report logs the run's counts and checks the ledger.
func (h *harness) report(t0 time.Time, led *ledger, fl *faultLog, stalls *stallMonitor, settled time.Duration, skipped int64) {
	t := h.t
	t.Helper()
	recs := led.all()
	require.Empty(t, led.dups, "request ids must be unique")
	sort.Slice(recs, func(i, j int) bool { return recs[i].start.Before(recs[j].start) })

	codes := map[string]int{}
	type kindCount struct{ sent, ok int }
	perKind := make([]kindCount, numKinds)
	phases := []struct {
		name      string
		sent, ok  int
		from, to  time.Duration
		mustAllOK bool
	}{
		{"before the first fault", 0, 0, 0, fl.faults[0].start, false},
		{"until routing settled", 0, 0, fl.faults[0].start, settled, false},
		{"after settling", 0, 0, settled, 1 << 62, true},
	}
	var lat []time.Duration
	var problems []string
	var failed []*record
	excused := map[string]bool{}
	// stalled reports whether the process stalled long enough, during r or
	// the second before it, to fail r without any fault of the code.
	stalled := func(r *record) bool {
		_, longest := stalls.within(r.start.Add(-time.Second), r.end)
		if longest >= stallExcuse {
			excused[r.id] = true
			return true
		}
		return false
	}
	for _, r := range recs {
		if n := r.outcomes.Load(); n != 1 {
			problems = append(problems, fmt.Sprintf("%s: %d outcomes", r.id, n))
			continue
		}
		d := r.end.Sub(r.start)
		lat = append(lat, d)
		codes[r.code]++
		perKind[r.kind].sent++
		if r.code == "ok" {
			perKind[r.kind].ok++
		} else {
			failed = append(failed, r)
		}
		if r.problem != "" {
			problems = append(problems, fmt.Sprintf("%s (%s): %s", r.id, kindNames[r.kind], r.problem))
		} else if r.code != "ok" && !expected(r.kind, r.code) {
			problems = append(problems, fmt.Sprintf("%s (%s): no fault of this run explains %s: %s", r.id, kindNames[r.kind], r.code, r.msg))
		}
		if d > reqTimeout+margin {
			if held, _ := stalls.within(r.start, r.end); d > reqTimeout+margin+held {
				problems = append(problems, fmt.Sprintf("%s (%s): took %v, more than %v (+%v the process stalled meanwhile)",
					r.id, kindNames[r.kind], d, reqTimeout+margin, held))
			}
		}
		if r.kind == kindPinnedA && r.code != "ok" && !stalled(r) {
			problems = append(problems, fmt.Sprintf("%s: pinned to n1, which was never faulted, ended %s: %s", r.id, r.code, r.msg))
		}
		at := r.start.Sub(t0)
		for i := range phases {
			p := &phases[i]
			if at >= p.from && at < p.to {
				p.sent++
				if r.code == "ok" {
					p.ok++
				} else if p.mustAllOK && !stalled(r) {
					problems = append(problems, fmt.Sprintf("%s (%s): started %dms, after routing settled, ended %s",
						r.id, kindNames[r.kind], at.Milliseconds(), r.code))
				}
			}
		}
	}
	pct := percentiles(lat)

	// Where the steps ran: pinned-a only on n1, no non-idempotent step more
	// than once, and how many steps ran again elsewhere.
	runs := h.execs.snapshot()
	perNode := map[string]int{}
	for _, on := range runs {
		for _, n := range on {
			perNode[n]++
		}
	}
	extra := 0
	for _, r := range recs {
		want := map[string]int{}
		for _, tag := range r.tags {
			want[tag]++
		}
		for tag, w := range want {
			on := runs[tag]
			if len(on) > w {
				extra += len(on) - w
				if r.kind == kindOnce {
					problems = append(problems, fmt.Sprintf("%s: non-idempotent step ran %d times (%v)", r.id, len(on), on))
				}
			}
			if r.kind == kindPinnedA && r.code == "ok" && !slices.Equal(on, []string{"n1"}) {
				problems = append(problems, fmt.Sprintf("%s: pinned-a ran on %v", r.id, on))
			}
		}
	}

	t.Logf("sent %d requests in %v (%d workers, one offered every %v, %d ticks skipped with every worker busy)",
		len(recs), streamFor, workers, pace, skipped)
	t.Logf("ok %d", codes["ok"])
	var keys []string
	for k := range codes {
		if k != "ok" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%s %d", k, codes[k])
	}
	t.Logf("latency p50 %v p99 %v max %v", pct(0.50), pct(0.99), pct(1))
	for k := range numKinds {
		t.Logf("  %-9s sent %5d ok %5d", kindNames[k], perKind[k].sent, perKind[k].ok)
	}
	for _, p := range phases {
		t.Logf("  started %-23s sent %5d ok %5d", p.name, p.sent, p.ok)
	}
	fl.log()
	stalls.log(t, len(excused))
	var nodes []string
	for n := range perNode {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var dist []string
	for _, n := range nodes {
		dist = append(dist, fmt.Sprintf("%s=%d", n, perNode[n]))
	}
	t.Logf("  steps run per node incarnation: %s; steps run again after their node was lost: %d", strings.Join(dist, " "), extra)
	for i, r := range failed {
		if i == 40 {
			t.Logf("  … %d more failed requests", len(failed)-i)
			break
		}
		t.Logf("  failed %s %-8s started %5dms took %5dms: %s", r.id, kindNames[r.kind], r.start.Sub(t0).Milliseconds(), r.end.Sub(r.start).Milliseconds(), r.msg)
	}

	if len(problems) > 0 {
		for _, p := range problems[:min(len(problems), 50)] {
			t.Error(p)
		}
		t.Fatalf("%d broken guarantees", len(problems))
	}
	require.Equal(t, len(recs), sumValues(codes), "every request has one outcome")
}

// percentiles sorts lat and returns its p-th percentile for p in [0, 1].
func percentiles(lat []time.Duration) func(p float64) time.Duration {
	slices.Sort(lat)
	return func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Microsecond)
	}
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
