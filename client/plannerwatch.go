package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
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
// (schema.PlannerAck, on a subject of its own per request) and cancels a
// request whose planner is lost: no responders on the planner's info
// subject for lostAfter (at least two checks), or a hello of another
// incarnation. Without it such a request would wait for its whole budget.
type plannerWatch struct {
	nc        *nats.Conn
	subj      bus.Subjects
	every     time.Duration // between two checks of a planner
	lostAfter time.Duration // how long "no responders" must last
	log       *slog.Logger
	prefix    string // "<inbox>.": acks arrive on prefix + token
	sub       *nats.Subscription
	seq       atomic.Uint64
	pending   sync.Map // token → *watched

	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
	mu      sync.Mutex // guards closing against wg.Add
	closing bool
	wg      sync.WaitGroup
}

// watched is one request waiting for its response.
type watched struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	seen   atomic.Bool // an ack arrived (a request has one planner)
}

func newPlannerWatch(nc *nats.Conn, subj bus.Subjects, every, lostAfter time.Duration, log *slog.Logger) (*plannerWatch, error) {
	w := &plannerWatch{nc: nc, subj: subj, every: every, lostAfter: lostAfter, log: log, prefix: nats.NewInbox() + "."}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	sub, err := nc.Subscribe(w.prefix+"*", w.onAck)
	if err != nil {
		w.cancel()
		return nil, fmt.Errorf("client: subscribe planner acks: %w", err)
	}
	w.sub = sub
	return w, nil
}

// register watches a request until the returned function is called; the
// request names the returned subject in schema.HeaderPlannerAck.
func (w *plannerWatch) register(ctx context.Context, cancel context.CancelCauseFunc) (subject string, done func()) {
	token := strconv.FormatUint(w.seq.Add(1), 36)
	w.pending.Store(token, &watched{ctx: ctx, cancel: cancel})
	return w.prefix + token, func() { w.pending.Delete(token) }
}

func (w *plannerWatch) onAck(m *nats.Msg) {
	v, ok := w.pending.Load(strings.TrimPrefix(m.Subject, w.prefix))
	if !ok {
		return // answered already
	}
	x := v.(*watched)
	tree, err := mesh.DecodeReply(m)
	var ack *schema.PlannerAck
	if err == nil {
		ack, err = schema.ParsePlannerAck(tree)
	}
	if err != nil {
		w.log.Warn("bad planner ack dropped", "error", err)
		return
	}
	if x.seen.Swap(true) {
		return // a duplicate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.watch(x, ack)
	}()
}

// watch asks the planner's info subject every interval until the request
// ends, and cancels it when the planner is lost. "No responders" alone
// must last lostAfter: a live planner that is reconnecting to another NATS
// server has no subscriptions for a moment.
func (w *plannerWatch) watch(x *watched, ack *schema.PlannerAck) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	var silentSince time.Time // first of an unbroken run of "no responders"
	misses := 0
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		if !w.nc.IsConnected() {
			silentSince, misses = time.Time{}, 0 // our side of the bus is down
			continue
		}
		ctx, cancel := context.WithTimeout(x.ctx, w.every)
		stop := context.AfterFunc(w.ctx, cancel)
		m, err := w.nc.RequestMsgWithContext(ctx, bus.NewMsg(w.subj.Info(ack.Planner), nil, codec.JSONType, ""))
		stop()
		cancel()
		if errors.Is(err, nats.ErrNoResponders) {
			if misses++; misses == 1 {
				silentSince = time.Now()
			}
			if misses >= 2 && time.Since(silentSince) >= w.lostAfter {
				w.lose(x, ack, "no longer answers")
				return
			}
			continue
		}
		silentSince, misses = time.Time{}, 0
		if err != nil {
			continue // slow, or the request ended
		}
		tree, err := mesh.DecodeReply(m)
		if err != nil {
			continue
		}
		mm, _ := tree.(map[string]any)
		inc, _ := mm["incarnation"].(int64)
		inst, _ := mm["instance"].(string)
		if inc != 0 && inc != ack.Incarnation || ack.Instance != "" && inst != "" && inst != ack.Instance {
			w.lose(x, ack, "was restarted")
			return
		}
	}
}

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
	_ = w.sub.Unsubscribe()
	w.wg.Wait()
}
