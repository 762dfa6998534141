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
// (schema.PlannerAck) and cancels a request whose planner is lost: its
// process is gone (no responders on its info subject, twice in a row) or
// was replaced by a new incarnation. Without it such a request would wait
// for its whole budget.
type plannerWatch struct {
	nc     *nats.Conn
	subj   bus.Subjects
	every  time.Duration
	log    *slog.Logger
	prefix string
	sub    *nats.Subscription
	seq    atomic.Uint64

	quit    chan struct{} // closed by close
	mu      sync.Mutex
	closing bool
	pending map[string]*watched // by token
	wg      sync.WaitGroup
}

// watched is one request waiting for its response.
type watched struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	seen   bool // an ack arrived (a request has one planner)
}

func newPlannerWatch(nc *nats.Conn, subj bus.Subjects, every time.Duration, log *slog.Logger) (*plannerWatch, error) {
	w := &plannerWatch{nc: nc, subj: subj, every: every, log: log, prefix: nats.NewInbox() + ".", pending: map[string]*watched{}, quit: make(chan struct{})}
	sub, err := nc.Subscribe(w.prefix+"*", w.onAck)
	if err != nil {
		return nil, fmt.Errorf("client: subscribe planner acks: %w", err)
	}
	w.sub = sub
	return w, nil
}

// register returns the subject a request names in HeaderPlannerAck, and
// the function that ends the watch when the request is answered.
func (w *plannerWatch) register(ctx context.Context, cancel context.CancelCauseFunc) (string, func()) {
	token := strconv.FormatUint(w.seq.Add(1), 36)
	w.mu.Lock()
	w.pending[token] = &watched{ctx: ctx, cancel: cancel}
	w.mu.Unlock()
	return w.prefix + token, func() {
		w.mu.Lock()
		delete(w.pending, token)
		w.mu.Unlock()
	}
}

func (w *plannerWatch) onAck(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, w.prefix)
	tree, err := mesh.DecodeReply(m)
	var ack *schema.PlannerAck
	if err == nil {
		ack, err = schema.ParsePlannerAck(tree)
	}
	if err != nil {
		w.log.Warn("bad planner ack dropped", "error", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	x, ok := w.pending[token]
	if !ok || x.seen || w.closing {
		return // answered already, or a duplicate
	}
	x.seen = true
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
