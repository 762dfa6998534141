package planner

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mpreg/mpreg/schema"
)

// DefaultMaxWaiting is the default of Runner.RouteWait.Max.
const DefaultMaxWaiting = 10_000

// WaitingStepBytes is the memory (Runner.Memory) that a step waiting for a
// route holds while it waits: its place in its request's wait lists, and a
// share of the request it keeps alive. A node holding 100 requests of 1,000
// waiting steps each uses about 550 bytes a step, bodies and plans
// included.
const WaitingStepBytes = 1 << 10

// pollEvery is how often steps waiting for a route try again without
// Runner.RouteWait.Watch.
const pollEvery = 25 * time.Millisecond

// errParked is exec's answer for a step of a run of several steps that
// found no route and is to wait for one (Call.park): the run parks it.
var errParked = &schema.Error{Code: schema.CodeNoRoute, Message: "waiting for a route"}

// Waiting returns the number of steps of the runner's requests that wait
// for a route now.
func (r *Runner) Waiting() int64 { return r.routeWaits.waiting.Load() }

// Wakes returns how many times Watch woke a request waiting for a route:
// a change that concerns none of the waiting steps wakes none.
func (r *Runner) Wakes() int64 { return r.routeWaits.wakes.Load() }

func (r *Runner) maxWaiting() int64 {
	if r.RouteWait.Max <= 0 {
		return DefaultMaxWaiting
	}
	return int64(r.RouteWait.Max)
}

// hold counts one more step waiting for a route, or says why it may not
// wait: OVERLOADED, at RouteWait.Max or at the end of Memory.
func (r *Runner) hold() *schema.Error {
	if maxWaiting := r.maxWaiting(); r.routeWaits.waiting.Add(1) > maxWaiting {
		r.routeWaits.waiting.Add(-1)
		return &schema.Error{Code: schema.CodeOverloaded,
			Message: fmt.Sprintf("the node has %d steps waiting for a route, its limit", maxWaiting),
			Details: map[string]any{"limit": "max_waiting", "max": maxWaiting}}
	}
	if m := r.Memory; m != nil && !m.TryAcquire(WaitingStepBytes) {
		r.routeWaits.waiting.Add(-1)
		return &schema.Error{Code: schema.CodeOverloaded,
			Message: "the node holds as many requests as its memory limit allows",
			Details: map[string]any{"limit": "max_planning_bytes"}}
	}
	return nil
}

// unhold ends the count of a step that hold counted.
func (r *Runner) unhold() {
	r.routeWaits.waiting.Add(-1)
	if m := r.Memory; m != nil {
		m.Release(WaitingStepBytes)
	}
}

// signal wakes the receiver of ch (of capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waits holds the steps of one run that wait for a route (Plan.RouteWait)
// without a goroutine each: grouped by what they wait for (function and
// locs), with one watch per group (Runner.RouteWait.Watch), one wake
// channel and one timer for the run. The run's goroutine owns it, except
// fired.
type waits struct {
	r      *Runner
	wait   time.Duration // Plan.RouteWait
	groups map[string]*waitGroup
	of     []*waitGroup // each step's group, once it was admitted
	steps  []stepWait
	held   int          // steps held in groups
	timer  *time.Timer  // the end of the earliest held step's wait
	due    time.Time    // when timer fires; zero when it is not armed
	ticker *time.Ticker // without Runner.RouteWait.Watch: every pollEvery
	wake   chan struct{}

	mu    sync.Mutex
	fired []*waitGroup // groups whose watch fired since the run looked
}

// stepWait is where one step of a run stands in its wait.
type stepWait struct {
	since   time.Time // when it first found no route; zero before
	epoch   uint64    // its group's epoch when it last started
	counted bool      // in Runner.routeWaits.waiting (Runner.hold)
}

// groupState is what a run knows of the route of a waitGroup.
type groupState int

const (
	// probing: no step found out yet. One step (the probe) is started;
	// the others are held until it finds out.
	probing groupState = iota
	// routable: a step found a route; steps start freely.
	routable
	// unroutable: a step found no route since the last wake; steps are
	// held until a wake or the end of their wait.
	unroutable
)

// waitGroup is the steps of a run that wait for the same function and
// locs.
type waitGroup struct {
	fun   string
	locs  []string
	state groupState
	probe int    // the step finding out (see probing); -1 when none
	held  []int  // steps held: behind the probe, or until a wake
	epoch uint64 // wakes of the group the run took
	stop  func() // ends the watch; nil until a step found no route
	fired bool   // in waits.fired; under waits.mu
}

func (r *Runner) newWaits(steps int, wait time.Duration) *waits {
	return &waits{r: r, wait: wait, groups: map[string]*waitGroup{}, of: make([]*waitGroup, steps),
		steps: make([]stepWait, steps), wake: make(chan struct{}, 1)}
}

// idle reports whether no step is held (a nil waits holds none).
func (w *waits) idle() bool { return w == nil || w.held == 0 }

func (w *waits) wakeC() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}

func (w *waits) pollC() <-chan time.Time {
	if w == nil || w.ticker == nil {
		return nil
	}
	return w.ticker.C
}

func (w *waits) timerC() <-chan time.Time {
	if w == nil || w.due.IsZero() {
		return nil
	}
	return w.timer.C
}

// close ends the run's watches and timers and the counts of its steps.
func (w *waits) close() {
	for _, g := range w.groups {
		if g.stop != nil {
			g.stop()
		}
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.ticker != nil {
		w.ticker.Stop()
	}
	for i := range w.steps {
		w.uncount(i)
	}
}

// admit decides what a ready step does: run now (as its group's probe or
// freely), or be held in its group.
func (w *waits) admit(f *dataflow, i int) (run, probe bool) {
	s := f.p.Steps[i]
	key := s.Fun + "\x00" + strings.Join(s.Locs, "\x00")
	g := w.groups[key]
	if g == nil {
		g = &waitGroup{fun: s.Fun, locs: s.Locs, probe: -1}
		w.groups[key] = g
	}
	w.of[i] = g
	w.steps[i].epoch = g.epoch
	switch {
	case g.state == routable:
		return true, false
	case g.state == probing && g.probe < 0:
		g.probe = i
		return true, true
	case g.state == probing:
		w.hold(g, i)
	default:
		w.park(f, g, i)
	}
	return false, false
}

// start starts held or parked step i again, unless the run failed.
func (w *waits) start(f *dataflow, g *waitGroup, i int, probe bool) {
	if f.failed.first != nil {
		return
	}
	w.steps[i].epoch = g.epoch
	if probe {
		g.probe = i
	}
	f.start(i, probe)
}

// hold holds step i in g, behind its probe: it has not looked for a route
// yet, and does not count as waiting.
func (w *waits) hold(g *waitGroup, i int) {
	g.held = append(g.held, i)
	w.held++
}

// park holds step i in g until a wake or the end of its wait, counting it
// as waiting; past the runner's bounds the run fails.
func (w *waits) park(f *dataflow, g *waitGroup, i int) {
	if !w.count(f, i) {
		return
	}
	w.hold(g, i)
	w.arm(w.steps[i].since.Add(w.wait))
}

// count starts step i's wait (now, unless it started before) and counts
// it as waiting. It reports false, having failed the run, when the runner
// cannot take one more waiting step.
func (w *waits) count(f *dataflow, i int) bool {
	s := &w.steps[i]
	if s.since.IsZero() {
		s.since = time.Now()
	}
	if s.counted {
		return true
	}
	if e := w.r.hold(); e != nil {
		f.fail(e.WithStep(f.p.Steps[i].Name, ""))
		return false
	}
	s.counted = true
	return true
}

// uncount ends the count of step i as waiting, if it was counted.
func (w *waits) uncount(i int) {
	if s := &w.steps[i]; s.counted {
		s.counted = false
		w.r.unhold()
	}
}

// arm has the timer fire at due, unless it fires before.
func (w *waits) arm(due time.Time) {
	if !w.due.IsZero() && !due.Before(w.due) {
		return
	}
	w.due = due
	if w.timer == nil {
		w.timer = time.NewTimer(time.Until(due))
		return
	}
	w.timer.Reset(time.Until(due))
}

// watch starts g's watch: a wake of g whenever a node may have come for
// it (every pollEvery without Runner.RouteWait.Watch).
func (w *waits) watch(g *waitGroup) func() {
	if w.r.RouteWait.Watch == nil {
		if w.ticker == nil {
			w.ticker = time.NewTicker(pollEvery)
		}
		return func() {}
	}
	return w.r.RouteWait.Watch(g.fun, g.locs, func() {
		w.r.routeWaits.wakes.Add(1)
		w.mu.Lock()
		if !g.fired {
			g.fired = true
			w.fired = append(w.fired, g)
		}
		w.mu.Unlock()
		signal(w.wake)
	})
}

// parked takes step i, which found no route.
func (w *waits) parked(f *dataflow, i int) {
	g := w.of[i]
	if g.probe == i {
		g.probe = -1
	}
	stale := w.steps[i].epoch != g.epoch
	if g.stop == nil {
		// Watched from now on: a node that came between the step's look
		// and now is seen by a look after this.
		g.stop = w.watch(g)
		stale = true
	}
	if !w.count(f, i) {
		return
	}
	if stale {
		// A node may have come since it looked: it (or the probe under
		// way) looks again.
		g.state = probing
		if g.probe < 0 {
			w.start(f, g, i, true)
			return
		}
		w.park(f, g, i)
		return
	}
	g.state = unroutable
	w.park(f, g, i)
	for _, j := range g.held {
		if !w.count(f, j) {
			return
		}
		w.arm(w.steps[j].since.Add(w.wait))
	}
}

// routed takes the news that step i, g's probe, found a route: the steps
// held in g are ready again.
func (w *waits) routed(f *dataflow, i int) {
	g := w.of[i]
	if g.probe == i {
		g.probe = -1
	}
	w.uncount(i)
	g.state = routable
	if g.stop != nil {
		// Routable: membership changes concern it no more. Should it
		// find no route again, parked watches anew.
		g.stop()
		g.stop = nil
	}
	for _, j := range g.held {
		w.uncount(j)
	}
	w.held -= len(g.held)
	f.ready = append(f.ready, g.held...)
	g.held = nil
}

// ran takes the end of step i, which did not wait.
func (w *waits) ran(f *dataflow, c completion) {
	g := w.of[c.step]
	if g == nil {
		return // a delegated step
	}
	w.uncount(c.step)
	if g.probe != c.step {
		return
	}
	g.probe = -1
	if c.node != "" {
		w.routed(f, c.step) // a probe run on the run's goroutine
		return
	}
	// It ended before it found out (its inputs did not resolve, the run
	// ends): the next held step finds out.
	w.next(f, g)
}

// next starts g's first held step as its probe, when g has none.
func (w *waits) next(f *dataflow, g *waitGroup) {
	if g.probe >= 0 || len(g.held) == 0 || f.failed.first != nil {
		return
	}
	j := g.held[0]
	g.held = g.held[1:]
	w.held--
	g.state = probing
	w.start(f, g, j, true) // it keeps its count while it looks
}

// woken takes the wakes of the groups whose watch fired.
func (w *waits) woken(f *dataflow) {
	w.mu.Lock()
	fired := w.fired
	w.fired = nil
	for _, g := range fired {
		g.fired = false
	}
	w.mu.Unlock()
	for _, g := range fired {
		w.retry(f, g)
	}
}

// poll wakes every group (without Runner.RouteWait.Watch).
func (w *waits) poll(f *dataflow) {
	for _, g := range w.groups {
		if g.state == unroutable {
			w.retry(f, g)
		}
	}
}

// retry takes a wake of g: a node may have come for it, so a step of g
// looks again.
func (w *waits) retry(f *dataflow, g *waitGroup) {
	g.epoch++
	if g.state == unroutable {
		g.state = probing
	}
	if g.state == probing {
		w.next(f, g)
	}
}

// expire fails with NO_ROUTE the held steps whose wait ended by now.
func (w *waits) expire(f *dataflow, now time.Time) {
	w.due = time.Time{}
	var ended []int
	var next time.Time
	for _, g := range w.groups {
		kept := g.held[:0]
		for _, j := range g.held {
			since := w.steps[j].since
			switch end := since.Add(w.wait); {
			case since.IsZero():
			case !now.Before(end):
				ended = append(ended, j)
				continue
			case next.IsZero() || end.Before(next):
				next = end
			}
			kept = append(kept, j)
		}
		g.held = kept
	}
	w.held -= len(ended)
	if !next.IsZero() {
		w.arm(next)
	}
	for _, j := range ended {
		w.uncount(j)
		if f.failed.first == nil {
			f.failStep(j, noRoute(f.callOf(j), now.Sub(w.steps[j].since)), w.steps[j].since)
		}
	}
}

// ended is the error of a run whose context ended while steps waited for
// a route: TIMEOUT (its budget) or CANCELLED, naming the step that waited
// longest and how long it waited.
func (w *waits) ended(f *dataflow) *schema.Error {
	first := -1
	for _, g := range w.groups {
		for _, j := range g.held {
			if s := w.steps[j].since; !s.IsZero() && (first < 0 || s.Before(w.steps[first].since)) {
				first = j
			}
		}
	}
	if first < 0 {
		return contextError(f.ctx, f.ctx.Err())
	}
	since := w.steps[first].since
	e := waitEnded(f.ctx, f.callOf(first), time.Since(since))
	f.observe(first, e, since)
	return e
}

// callOf is step i's call as far as its route goes.
func (f *dataflow) callOf(i int) *Call {
	s := f.p.Steps[i]
	return &Call{RequestID: f.p.ID, Step: s.Name, Fun: s.Fun, Locs: s.Locs, RouteWait: f.p.RouteWait}
}

// failStep ends step i, which waited since start, with e.
func (f *dataflow) failStep(i int, e *schema.Error, start time.Time) {
	f.observe(i, e, start)
	f.finish(completion{step: i, err: e})
}

// observe tells the Observer that step i, started at start, ended with e
// before it reached a node.
func (f *dataflow) observe(i int, e *schema.Error, start time.Time) {
	if f.r.Observer == nil {
		return
	}
	s := f.p.Steps[i]
	f.r.Observer.StepDone(StepEvent{RequestID: f.p.ID, Step: s.Name, Fun: s.Fun, Start: start, Duration: time.Since(start), Err: e})
}
