package client

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
// (schema.PlannerAck) and cancels a request whose planner is lost: its
// process is gone (no responders on its info subject, twice in a row) or
// was replaced by a new incarnation. Without it such a request would wait
// for its whole budget.
type plannerWatch struct {
	nc      *nats.Conn
	subj    bus.Subjects
	every   time.Duration
	log     *slog.Logger
	subject string // where this client's acks arrive
	sub     *nats.Subscription
	pending sync.Map // request id → *watched

	quit    chan struct{} // closed by close
	mu      sync.Mutex    // guards closing against wg.Add
	closing bool
	wg      sync.WaitGroup
}

// watched is one request waiting for its response.
type watched struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	seen   atomic.Bool // an ack arrived (a request has one planner)
}

func newPlannerWatch(nc *nats.Conn, subj bus.Subjects, every time.Duration, log *slog.Logger) (*plannerWatch, error) {
	w := &plannerWatch{nc: nc, subj: subj, every: every, log: log, subject: nats.NewInbox(), quit: make(chan struct{})}
	sub, err := nc.Subscribe(w.subject, w.onAck)
	if err != nil {
		return nil, fmt.Errorf("client: subscribe planner acks: %w", err)
	}
	w.sub = sub
	return w, nil
}

// register watches the request with this id until the returned function
// is called. Acks name the request id; a request whose id another request
// in flight already uses is not watched.
func (w *plannerWatch) register(id string, ctx context.Context, cancel context.CancelCauseFunc) func() {
	x := &watched{ctx: ctx, cancel: cancel}
	if _, dup := w.pending.LoadOrStore(id, x); dup {
		return func() {}
	}
	return func() { w.pending.CompareAndDelete(id, x) }
}

func (w *plannerWatch) onAck(m *nats.Msg) {
	tree, err := mesh.DecodeReply(m)
	var ack *schema.PlannerAck
	if err == nil {
		ack, err = schema.ParsePlannerAck(tree)
	}
	if err != nil {
		w.log.Warn("bad planner ack dropped", "error", err)
		return
	}
	v, ok := w.pending.Load(ack.ID)
	if !ok {
		return // answered already
	}
	x := v.(*watched)
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
// ends, and cancels it when the planner is lost.
func (w *plannerWatch) watch(x *watched, ack *schema.PlannerAck) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-w.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(x.ctx, w.every)
		m, err := w.nc.RequestMsgWithContext(ctx, bus.NewMsg(w.subj.Info(ack.Node), nil, codec.JSONType, ""))
		cancel()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			// Gone, or between two NATS servers for a moment: twice in a
			// row, an interval apart, is gone.
			if misses++; misses >= 2 {
				w.lose(x, ack, "no longer answers")
				return
			}
			continue
		case err != nil:
			continue // slow, or the request ended: ask again or stop
		}
		misses = 0
		tree, err := mesh.DecodeReply(m)
		if err != nil {
			continue
		}
		mm, _ := tree.(map[string]any)
		if inc, ok := mm["incarnation"].(int64); ok && inc != ack.Incarnation {
			w.lose(x, ack, "was restarted")
			return
		}
	}
}

func (w *plannerWatch) lose(x *watched, ack *schema.PlannerAck, reason string) {
	w.log.Info("planner of a request lost", "request_id", ack.ID, "peer", ack.Node, "reason", reason)
	x.cancel(&plannerLost{node: ack.Node, reason: reason})
}

// close stops taking acks and watching, and waits for the watchers.
func (w *plannerWatch) close() {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.closing = true
	close(w.quit)
	w.mu.Unlock()
	_ = w.sub.Unsubscribe()
	w.wg.Wait()
}
