package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// plannerLost is the cancel cause of a request whose planner node is gone.
type plannerLost struct {
	node   string
	reason string
}

func (e *plannerLost) Error() string {
	return fmt.Sprintf("planner node %s %s", e.node, e.reason)
}

// plannerWatch learns which node plans each of the client's rpc requests
// (the planned event of the request's stream, docs/PROTOCOL.md §5.4) and
// cancels a
// request whose planner is lost, which would otherwise wait for its whole
// budget. A following client has the liveness detector already: its
// membership table, which tracks the request at the planner (Table.Track)
// and cancels it when the planner is declared dead or replaced. A client
// that does not follow asks the planner's info subject instead, with one
// watcher per planner however many requests it plans.
type plannerWatch struct {
	nc        *nats.Conn
	subj      bus.Subjects
	table     *membership.Table // when the client follows; nil otherwise
	every     time.Duration     // between two checks of a planner
	lostAfter time.Duration     // how long "no responders" must last
	log       *slog.Logger
	seq       atomic.Uint64
	pending   sync.Map     // token → *watched
	sight     atomic.Int32 // sightUnknown, sightYes or sightNo

	ctx      context.Context // cancelled by close
	cancel   context.CancelFunc
	mu       sync.Mutex // guards closing, planners and wg.Add
	closing  bool
	planners map[plannerKey]*watchedPlanner
	wg       sync.WaitGroup
}

// Whether the client can see the nodes' info subjects (plannerWatch.sight).
const (
	sightUnknown int32 = iota
	sightYes
	sightNo // a caller in another NATS account: nothing to ask
)

// watched is one request waiting for its response.
type watched struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	seen    atomic.Bool // its planner is known (a request has one)
	mu      sync.Mutex
	release func() // ends the watch of the request's planner
}

// plannerKey names one planner process.
type plannerKey struct {
	node        string
	incarnation int64
	instance    string
}

// watchedPlanner is the watch of one planner process by a client that does not
// follow: the requests it plans.
type watchedPlanner struct {
	requests map[*watched]bool
}

func newPlannerWatch(nc *nats.Conn, subj bus.Subjects, table *membership.Table, every, lostAfter time.Duration, log *slog.Logger) (*plannerWatch, error) {
	w := &plannerWatch{nc: nc, subj: subj, table: table, every: every, lostAfter: lostAfter, log: log,
		planners: map[plannerKey]*watchedPlanner{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// register watches a request until the returned function is called; the
// request's planned event goes to planned with the returned token.
func (w *plannerWatch) register(ctx context.Context, cancel context.CancelCauseFunc) (token string, done func()) {
	token = strconv.FormatUint(w.seq.Add(1), 36)
	x := &watched{ctx: ctx, cancel: cancel}
	w.pending.Store(token, x)
	return token, func() {
		w.pending.Delete(token)
		x.mu.Lock()
		release := x.release
		x.release = nil
		x.mu.Unlock()
		if release != nil {
			release()
		}
	}
}

// planned starts watching the planner of the request registered under
// token, which its stream's planned event named.
func (w *plannerWatch) planned(token string, ack *schema.PlannerAck) {
	v, ok := w.pending.Load(token)
	if !ok {
		return // answered already
	}
	x := v.(*watched)
	if x.seen.Swap(true) {
		return // a duplicate
	}
	var release func()
	if w.table != nil {
		release = w.track(x, ack)
	} else {
		release = w.poll(x, ack)
	}
	x.mu.Lock()
	x.release = release
	x.mu.Unlock()
	if _, ok := w.pending.Load(token); !ok && release != nil {
		release() // the request ended while the watch started
	}
}

// track hands the request to the following client's table: when the
// planner is declared dead or replaced, the table cancels it.
func (w *plannerWatch) track(x *watched, ack *schema.PlannerAck) func() {
	p, ok := w.table.Get(ack.Planner)
	switch {
	case !ok:
		// Not in the view (yet): the view learns it within a heartbeat,
		// and the request is watched from then on.
	case p.Hello.Incarnation != ack.Incarnation || otherInstance(p.Hello.Instance, ack.Instance):
		w.lose(x, ack, "was restarted")
		return nil
	}
	ctx, cancel := context.WithCancelCause(x.ctx)
	untrack := w.table.Track(ack.Planner, cancel)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), membership.ErrNodeLost) {
			w.lose(x, ack, "was lost")
		}
	})
	return func() {
		stop()
		untrack()
		cancel(nil)
	}
}

// poll watches the planner process of ack, one watcher per process, by
// asking its info subject: "no responders" for lostAfter (at least two
// checks: a live planner moving to another NATS server has no
// subscriptions for a moment), or a hello of another process, means it is
// gone.
func (w *plannerWatch) poll(x *watched, ack *schema.PlannerAck) func() {
	key := plannerKey{ack.Planner, ack.Incarnation, ack.Instance}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing || w.sight.Load() == sightNo {
		// From another account the request's budget, and what its stream
		// says, are all there is to go by.
		return nil
	}
	p := w.planners[key]
	if p == nil {
		p = &watchedPlanner{requests: map[*watched]bool{}}
		w.planners[key] = p
		w.wg.Add(1)
		go w.watchPlanner(key, ack, p) // owned: close cancels w.ctx and waits
	}
	p.requests[x] = true
	return func() {
		w.mu.Lock()
		delete(p.requests, x)
		w.mu.Unlock()
	}
}

// watchPlanner asks one planner's info subject every interval while it
// plans requests of this client, and cancels them all when it is lost.
func (w *plannerWatch) watchPlanner(key plannerKey, ack *schema.PlannerAck, p *watchedPlanner) {
	defer w.wg.Done()
	t := time.NewTicker(w.every)
	defer t.Stop()
	var silentSince time.Time // first of an unbroken run of "no responders"
	misses := 0
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		if len(p.requests) == 0 {
			delete(w.planners, key) // nothing left to watch
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if !w.nc.IsConnected() {
			silentSince, misses = time.Time{}, 0 // our side of the bus is down
			continue
		}
		reason := w.check(ack, &silentSince, &misses)
		if reason == "" {
			continue
		}
		w.mu.Lock()
		delete(w.planners, key)
		lost := p.requests
		p.requests = nil
		w.mu.Unlock()
		if reason == unseen {
			return // not lost: out of sight (see visible)
		}
		for x := range lost {
			w.lose(x, ack, reason)
		}
		return
	}
}

// check asks the planner's info subject once and returns why it is lost,
// or "" while it is not.
func (w *plannerWatch) check(ack *schema.PlannerAck, silentSince *time.Time, misses *int) string {
	ctx, cancel := context.WithTimeout(w.ctx, w.every)
	defer cancel()
	m, err := w.nc.RequestMsgWithContext(ctx, bus.NewMsg(w.subj.Info(ack.Planner), nil, codec.JSONType, ""))
	if errors.Is(err, nats.ErrNoResponders) {
		if !w.visible(ctx) {
			return unseen
		}
		if *misses++; *misses == 1 {
			*silentSince = time.Now()
		}
		if *misses >= 2 && time.Since(*silentSince) >= w.lostAfter {
			return "no longer answers"
		}
		return ""
	}
	*silentSince, *misses = time.Time{}, 0
	if err != nil {
		return "" // slow, or closing
	}
	w.sight.Store(sightYes)
	tree, err := mesh.DecodeReply(m)
	if err != nil {
		return ""
	}
	var inc int64
	var inst string
	if mesh.ReplyKind(tree) == schema.KindGoodbye {
		g, err := schema.ParseGoodbye(tree)
		if err != nil {
			return ""
		}
		inc, inst = g.Incarnation, g.Instance
	} else {
		h, err := schema.ParseHello(tree)
		if err != nil {
			return ""
		}
		inc, inst = h.Incarnation, h.Instance
	}
	if inc != ack.Incarnation || otherInstance(inst, ack.Instance) {
		return "was restarted"
	}
	return ""
}

// unseen is check's answer when the client cannot see any node's info
// subject: a caller in another NATS account, to which the nodes' account
// exports only ext.rpc and ext.cancel. Silence there says nothing of the
// planner.
const unseen = "cannot be seen from this account"

// visible reports whether the client can see the nodes' subjects at all,
// once a planner's info subject had no responders: it asks the sync
// subject, which every node answers, once for the client's life. "No
// responders" there too, and never an answer before, means the client is
// in another account; anything else means the planner alone is silent.
func (w *plannerWatch) visible(ctx context.Context) bool {
	switch w.sight.Load() {
	case sightYes:
		return true
	case sightNo:
		return false
	}
	_, err := w.nc.RequestMsgWithContext(ctx, bus.NewMsg(w.subj.Sync(), nil, codec.JSONType, ""))
	switch {
	case err == nil:
		w.sight.CompareAndSwap(sightUnknown, sightYes)
	case errors.Is(err, nats.ErrNoResponders):
		if w.sight.CompareAndSwap(sightUnknown, sightNo) {
			w.log.Debug("no node subject answers: planners are not watched, a request ends by its budget")
		}
	}
	return w.sight.Load() != sightNo
}

// otherInstance reports whether two instance nonces name different
// processes (an empty one names any).
func otherInstance(a, b string) bool { return a != "" && b != "" && a != b }

func (w *plannerWatch) lose(x *watched, ack *schema.PlannerAck, reason string) {
	w.log.Info("planner of a request lost", "request_id", ack.ID, "peer", ack.Planner, "reason", reason)
	x.cancel(&plannerLost{node: ack.Planner, reason: reason})
}

// close stops taking acks and watching, and waits for the watchers.
func (w *plannerWatch) close() {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.closing = true
	w.cancel()
	w.mu.Unlock()
	w.wg.Wait()
}
