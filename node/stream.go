package node

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// stream is a streamed response (docs/PROTOCOL.md §5.4): events on the
// request's reply subject, each with the header schema.HeaderEvent, the
// last of which is the response itself. Events are sent one at a time and
// none after the result.
type stream struct {
	fr    *front
	m     *nats.Msg
	c     codec.Codec
	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

// openStream starts the stream a request asked for (nil when it asked for
// none): the planned event now with progress, else once the request has
// run for PlannerAckAfter, so that quick requests cost one message.
func (fr *front) openStream(m *nats.Msg, c codec.Codec, req *schema.Request, steps int) *stream {
	if !req.Stream && !req.Progress || m.Reply == "" {
		return nil
	}
	st := &stream{fr: fr, m: m, c: c}
	planned := &schema.Planned{ID: req.ID, Planner: fr.cfg.NodeID, Incarnation: fr.ann.Incarnation(),
		Instance: fr.ann.Instance(), Steps: int64(steps)}
	if req.Progress || fr.cfg.PlannerAckAfter < 0 {
		st.send(schema.EventPlanned, planned)
	} else {
		st.timer = time.AfterFunc(fr.cfg.PlannerAckAfter, func() { st.send(schema.EventPlanned, planned) })
	}
	return st
}

// send publishes one event unless the result has gone.
func (st *stream) send(event string, v any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return
	}
	if err := mesh.RespondEvent(st.fr.nc, st.m, st.c, event, v, nil); err != nil {
		st.fr.replyFailed("stream event", "", err)
	}
}

// step sends a step event (progress).
func (st *stream) step(e schema.TraceEntry) { st.send(schema.EventStep, e) }

// close ends the events: the result goes next, and nothing after it.
func (st *stream) close() {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.done = true
	st.mu.Unlock()
	if st.timer != nil {
		st.timer.Stop()
	}
}
