package node

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

// replySlack is what a reply's body leaves of the maximum payload for its
// headers and for the keys around what is measured (the id, "results",
// "trace"): more than they take.
const replySlack = 512

// answer sends the response to an rpc request, as the last message of a
// stream when event is set. A response too large for one message loses as
// little as it can (docs/PROTOCOL.md §5.3): for a caller that asked for
// split_results, its results go ahead in part events; then the trace is
// cut to what fits, with trace_truncated; only then are the results
// dropped, the request's error (or PAYLOAD_TOO_LARGE) kept.
func (fr *front) answer(m *nats.Msg, c codec.Codec, event string, resp *schema.Response, split bool) error {
	if m.Reply == "" {
		return nil
	}
	data, problem := mesh.FitReply(fr.nc, c, event, resp)
	if problem == nil {
		return fr.sendReply(m, c, event, data, resp.ID)
	}
	trace, truncated := resp.Trace, resp.TraceTruncated
	if problem.Code == schema.CodePayloadTooLarge {
		if split {
			if rest, sent := fr.sendParts(m, c, resp); sent {
				resp, event = rest, schema.EventResult
			}
		}
		if len(resp.Trace) > 0 {
			if resp, data = fr.fitTrace(c, event, resp); data != nil {
				return fr.sendReply(m, c, event, data, resp.ID)
			}
		}
	}
	return mesh.RespondEvent(fr.nc, m, c, event, resp, func(problem *schema.Error) any {
		// The results cannot be sent: drop them. A step's error says more
		// than the size does, so it is kept; so is as much of the trace
		// as fits.
		e := resp.Error
		if e == nil {
			e = problem
		} else {
			kept := *e
			e = &kept
		}
		fb := &schema.Response{ID: resp.ID, Results: map[string]any{}, Error: e, Trace: trace, TraceTruncated: truncated}
		if len(trace) > 0 {
			fb, _ = fr.fitTrace(c, event, fb)
		}
		return fb
	})
}

// fitTrace returns resp and its encoding when it fits one message, else
// resp with as much of its trace as fits with the rest of it (the entries
// that started first), marked trace_truncated; data is nil when even resp
// without its trace does not fit.
func (fr *front) fitTrace(c codec.Codec, event string, resp *schema.Response) (*schema.Response, []byte) {
	if data, problem := mesh.FitReply(fr.nc, c, event, resp); problem == nil {
		return resp, data
	}
	cut := *resp
	cut.Trace, cut.TraceTruncated = []schema.TraceEntry{}, true
	data, problem := mesh.FitReply(fr.nc, c, event, &cut)
	if problem != nil {
		return &cut, nil
	}
	room := int(fr.nc.MaxPayload()) - len(data) - replySlack
	keep := 0
	for _, e := range resp.Trace {
		b, err := c.Encode(e)
		if room -= len(b) + 1; err != nil || room < 0 {
			break
		}
		keep++
	}
	if keep == 0 {
		return &cut, data
	}
	cut.Trace = resp.Trace[:keep]
	if more, problem := mesh.FitReply(fr.nc, c, event, &cut); problem == nil {
		return &cut, more
	}
	cut.Trace = []schema.TraceEntry{}
	return &cut, data
}

// sendParts sends the results of resp ahead of it in part events, as many
// in each as fit one message, and returns what is left to send: resp
// without its results. sent is false, and nothing was sent, when a result
// does not fit a message on its own. A part that cannot be sent ends the
// response with its error.
func (fr *front) sendParts(m *nats.Msg, c codec.Codec, resp *schema.Response) (rest *schema.Response, sent bool) {
	if len(resp.Results) == 0 {
		return resp, false
	}
	room := int(fr.nc.MaxPayload()) - replySlack - len(resp.ID)
	sizes := make(map[string]int, len(resp.Results))
	for name, v := range resp.Results {
		b, err := c.Encode(map[string]any{name: v})
		if err != nil || len(b) > room {
			return resp, false
		}
		sizes[name] = len(b)
	}
	failed := func(problem *schema.Error) *schema.Response {
		if resp.Error != nil {
			problem = resp.Error
		}
		return &schema.Response{ID: resp.ID, Results: map[string]any{}, Error: problem, Trace: resp.Trace}
	}
	part, size := map[string]any{}, 0
	flush := func() *schema.Error {
		data, problem := mesh.FitReply(fr.nc, c, schema.EventPart, &schema.Response{ID: resp.ID, Results: part})
		if problem == nil {
			if err := mesh.PublishReply(fr.nc, m, c, schema.EventPart, data); err != nil {
				problem = schema.Wrap(schema.CodeInternal, err, "a part of the response was not sent")
			}
		}
		part, size = map[string]any{}, 0
		return problem
	}
	for _, name := range slices.Sorted(maps.Keys(resp.Results)) {
		if size+sizes[name] > room {
			if problem := flush(); problem != nil {
				return failed(problem), true
			}
		}
		part[name] = resp.Results[name]
		size += sizes[name]
	}
	if problem := flush(); problem != nil {
		return failed(problem), true
	}
	left := *resp
	left.Results = map[string]any{}
	return &left, true
}

// sendReply publishes data, the last message of the response to request
// id. A reply sent while no other request is being planned here is
// published at once; the others go through fr.replies. data is not reused
// afterwards: the batch may publish it after the request's worker is done.
func (fr *front) sendReply(m *nats.Msg, c codec.Codec, event string, data []byte, id string) error {
	if fr.planning.Load() == 0 || unbatched.Load() {
		return mesh.PublishReply(fr.nc, m, c, event, data)
	}
	out, err := mesh.ReplyMsg(m, c, event, data)
	if out == nil {
		return err
	}
	fr.replies.send(fr.env, out, id)
	return nil
}

// replyBatch lets the replies of a node's workers share the connection's
// writes, as those of a responder that answers on its subscription's own
// goroutine do. nats.go's flusher goroutine writes out whatever was
// published since it last ran, and a publish wakes it to run next on its
// processor: replies published by many workers, each after its own work,
// are one write each, while one goroutine publishing several back to back
// shares one write between them.
//
// A worker with a reply to send while other requests are being planned
// puts it in the batch; if no worker is sending the batch, it becomes the
// sender: it yields once (runtime.Gosched), so that the workers already
// runnable get to their replies and add them, then publishes the batch,
// and again until it finds it empty. No reply waits on a timer, nor on
// another request's work: only on the goroutines that were runnable.
type replyBatch struct {
	mu      sync.Mutex
	queue   []queuedReply
	sending bool
}

// unbatched, set by a benchmark that compares, sends every reply at once.
var unbatched atomic.Bool

// queuedReply is a reply in the batch, with its request's id for the log
// if it cannot be sent.
type queuedReply struct {
	msg *nats.Msg
	id  string
}

// send adds a reply to the batch, and sends the batch unless another
// worker is sending it. Replies that cannot be sent are logged.
func (b *replyBatch) send(e *env, out *nats.Msg, id string) {
	b.mu.Lock()
	b.queue = append(b.queue, queuedReply{msg: out, id: id})
	if b.sending {
		b.mu.Unlock()
		return // the sender takes it
	}
	b.sending = true
	b.mu.Unlock()
	runtime.Gosched()
	var batch []queuedReply
	for {
		b.mu.Lock()
		batch, b.queue = b.queue, batch[:0] // the queue takes the sent one's room
		if len(batch) == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, r := range batch {
			if err := e.nc.PublishMsg(r.msg); err != nil {
				e.replyFailed("rpc", r.id, fmt.Errorf("node: reply: %w", err))
			}
		}
		clear(batch)
	}
}
