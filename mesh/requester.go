package mesh

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/schema"
)

// ErrRequesterClosed is a Request's error once its Requester is closed.
var ErrRequesterClosed = errors.New("mesh: requester closed")

// ErrInboxRefused wraps NATS' refusal of the Requester's inbox: the
// connection's user may not subscribe under its inbox prefix.
var ErrInboxRefused = errors.New("mesh: NATS refused the reply inbox")

// PermissionDenied is PERMISSION_DENIED for err, a permission violation
// that NATS reported for a request: the connection may not do what (in
// words: "send steps to node n1"), or, for ErrInboxRefused, subscribe its
// inbox.
func PermissionDenied(err error, what string) *schema.Error {
	if errors.Is(err, ErrInboxRefused) {
		return schema.Wrap(schema.CodePermissionDenied, err,
			"NATS does not let this connection subscribe its reply inbox (a user confined to its own inbox prefix needs it set: client.Config.Dial.InboxPrefix, mpreg --inbox-prefix)")
	}
	return schema.Wrap(schema.CodePermissionDenied, err, "NATS does not let this connection %s", what)
}

// Requester sends requests and matches their replies on one inbox
// subscription of its own. nats.go's shared reply subscription hands each
// reply over under the connection's lock, keeps at most 64 MB of replies
// not yet handed over (a burst of large replies overflowed it and replies
// were dropped), and fails every request still waiting when the connection
// closes, even one whose reply was already read (a server that stops right
// after answering lost its callers' replies). Here the connection's reader
// puts each reply on a channel that one goroutine of the Requester's
// empties: a reply read before the connection closes is delivered.
type Requester struct {
	nc      *nats.Conn
	prefix  string // "<inbox>."
	sub     *nats.Subscription
	replies chan *nats.Msg
	seq     atomic.Uint64
	waiting waitingSet
	spare   sync.Pool // *pending of plain requests, for reuse (see request)
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	inbox   atomic.Pointer[error] // why the inbox may not be subscribed
}

// waitingSet holds the requests waiting for their replies, by token: the
// sequence number their reply subject ends with, in base 36.
type waitingSet struct {
	mu sync.Mutex
	m  map[uint64]*pending
}

func (w *waitingSet) store(token uint64, p *pending) {
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[uint64]*pending)
	}
	w.m[token] = p
	w.mu.Unlock()
}

func (w *waitingSet) load(token uint64) *pending {
	w.mu.Lock()
	p := w.m[token]
	w.mu.Unlock()
	return p
}

// take removes the request under token and returns it, or nil if there
// is none: whoever took it alone answers it.
func (w *waitingSet) take(token uint64) *pending {
	w.mu.Lock()
	p, ok := w.m[token]
	if ok {
		delete(w.m, token)
	}
	w.mu.Unlock()
	return p
}

// takeIf removes and returns the requests for which match is true.
func (w *waitingSet) takeIf(match func(*pending) bool) []*pending {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*pending
	for token, p := range w.m {
		if match(p) {
			delete(w.m, token)
			out = append(out, p)
		}
	}
	return out
}

// pending is a request waiting for its reply, or for NATS to refuse it.
type pending struct {
	subject string
	reply   chan *nats.Msg // buffered: one reply, or nil once refused is set
	refused error          // written before a nil is sent on reply
	events  chan *nats.Msg // a stream's events before its result; nil for a plain request
	parts   *parts         // the part events of a response in parts; nil unless asked for
	// taken says that request returned while the dispatcher or refuse held
	// the request, and will still send on reply: it may not be reused.
	taken bool
}

// parts holds the part events (schema.EventPart) of a response sent in
// several messages, up to max bytes of them: none is dropped, and past
// max the response is refused whole.
type parts struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	msgs  []*nats.Msg
	over  bool
}

// ErrPartsTooLarge is RequestParts' error when the parts of a response
// came to more bytes than the caller allowed.
var ErrPartsTooLarge = errors.New("mesh: response parts larger than allowed")

// StreamEvents is the most events of one stream that may wait for its
// caller; later ones are dropped until it catches up (the result never
// is).
const StreamEvents = 256

// replyBuffer is how many replies may wait for the Requester's goroutine;
// a planner's Flow keeps fewer steps in flight.
const replyBuffer = 1 << 16

// NewRequester subscribes the requester's inbox on nc. Close stops it.
//
// It also chains itself into nc's async error handler (the handler set
// before still runs first): NATS reports a publish or subscribe that the
// connection's permissions forbid only there, and a request it refused
// would otherwise wait until its deadline.
func NewRequester(nc *nats.Conn) (*Requester, error) {
	r := &Requester{nc: nc, prefix: nc.NewInbox() + ".", replies: make(chan *nats.Msg, replyBuffer),
		done: make(chan struct{}), stopped: make(chan struct{})}
	sub, err := nc.ChanSubscribe(r.prefix+"*", r.replies)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(nc *nats.Conn, s *nats.Subscription, err error) {
		if prev != nil {
			prev(nc, s, err)
		}
		r.refuse(err)
	})
	go r.dispatch() // owned: Close stops it and waits
	return r, nil
}

// dispatch hands each reply to the request waiting for it.
func (r *Requester) dispatch() {
	defer close(r.stopped)
	for {
		select {
		case m := <-r.replies:
			suffix, ok := strings.CutPrefix(m.Subject, r.prefix)
			if !ok {
				continue
			}
			token, err := strconv.ParseUint(suffix, 36, 64)
			if err != nil {
				continue
			}
			ev := m.Header.Get(schema.HeaderEvent)
			if ev == schema.EventPart && r.part(token, m) {
				continue
			}
			if ev != "" && ev != schema.EventResult && r.event(token, m) {
				continue
			}
			if p := r.waiting.take(token); p != nil {
				p.reply <- m
			}
		case <-r.done:
			return
		}
	}
}

// event hands an event of a stream to the request waiting under token, and
// reports whether that request takes events.
func (r *Requester) event(token uint64, m *nats.Msg) bool {
	p := r.waiting.load(token)
	if p == nil || p.events == nil {
		return false
	}
	select {
	case p.events <- m:
	default: // the caller is behind: this event is dropped
	}
	return true
}

// partOverhead is what a kept part costs beyond its bytes (the message and
// its place in the list).
const partOverhead = 256

// part keeps a part of the response the request under token waits for,
// and reports whether that request takes parts.
func (r *Requester) part(token uint64, m *nats.Msg) bool {
	p := r.waiting.load(token)
	if p == nil || p.parts == nil {
		return false
	}
	ps := p.parts
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// Each part costs its size and partOverhead, so that many empty parts
	// from a faulty peer are bounded too.
	if n := int64(len(m.Data)) + partOverhead; !ps.over && ps.bytes+n <= ps.max {
		ps.bytes += n
		ps.msgs = append(ps.msgs, m)
	} else {
		ps.over, ps.msgs = true, nil
	}
	return true
}

// Request publishes msg with a reply subject of the requester's and waits
// for the reply until ctx is done. "No responders" is nats.ErrNoResponders,
// as with nats.go's own requests. msg is not modified.
func (r *Requester) Request(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	p, _ := r.spare.Get().(*pending)
	if p == nil {
		p = &pending{reply: make(chan *nats.Msg, 1)}
	}
	p.subject = msg.Subject
	m, err := r.request(ctx, msg, p, nil, nil)
	if !p.taken { // nothing holds p any more, and reply is empty
		*p = pending{reply: p.reply}
		r.spare.Put(p)
	}
	return m, err
}

// RequestStream is Request for a streamed response: each message before
// the last (whose schema.HeaderEvent is not "result") goes to onEvent, on
// the caller's goroutine, and the last is returned. Up to events of them
// (at most StreamEvents) may wait for the caller; later ones are dropped
// until it catches up. A nil onEvent makes it Request.
func (r *Requester) RequestStream(ctx context.Context, msg *nats.Msg, events int, onEvent func(*nats.Msg)) (*nats.Msg, error) {
	p, eventCh := newPending(msg, events, onEvent)
	return r.request(ctx, msg, p, eventCh, onEvent)
}

// newPending is the request waiting for msg's reply, taking up to events
// events when onEvent is set.
func newPending(msg *nats.Msg, events int, onEvent func(*nats.Msg)) (*pending, <-chan *nats.Msg) {
	p := &pending{subject: msg.Subject, reply: make(chan *nats.Msg, 1)}
	if onEvent == nil {
		return p, nil
	}
	ch := make(chan *nats.Msg, min(max(events, 1), StreamEvents))
	p.events = ch
	return p, ch
}

// RequestParts is Request for a response that may come in parts (a
// request with split_results, docs/PROTOCOL.md §5.3): the part events
// that come before the response are returned with it, in the order they
// came. Parts of more than maxBytes in all end the request with
// ErrPartsTooLarge, once the response has come.
func (r *Requester) RequestParts(ctx context.Context, msg *nats.Msg, maxBytes int64) (*nats.Msg, []*nats.Msg, error) {
	return r.RequestStreamParts(ctx, msg, 0, nil, maxBytes)
}

// RequestStreamParts is RequestStream for a response that may come in
// parts: see RequestParts.
func (r *Requester) RequestStreamParts(ctx context.Context, msg *nats.Msg, events int, onEvent func(*nats.Msg), maxBytes int64) (*nats.Msg, []*nats.Msg, error) {
	p, eventCh := newPending(msg, events, onEvent)
	p.parts = &parts{max: maxBytes}
	m, err := r.request(ctx, msg, p, eventCh, onEvent)
	if err != nil {
		return nil, nil, err
	}
	p.parts.mu.Lock()
	defer p.parts.mu.Unlock()
	if p.parts.over {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", ErrPartsTooLarge, maxBytes)
	}
	return m, p.parts.msgs, nil
}

// request sends msg and waits for the reply p expects.
func (r *Requester) request(ctx context.Context, msg *nats.Msg, p *pending, eventCh <-chan *nats.Msg, onEvent func(*nats.Msg)) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.inbox.Load(); err != nil {
		return nil, *err
	}
	token := r.seq.Add(1)
	r.waiting.store(token, p)
	if err := r.inbox.Load(); err != nil {
		// refuse ran between the check above and the store: it did not
		// see this request.
		r.forget(token, p)
		return nil, *err
	}
	if err := r.publish(msg, token); err != nil {
		r.forget(token, p)
		return nil, err
	}
	for {
		select {
		case ev := <-eventCh:
			onEvent(ev)
		case m := <-p.reply:
			for len(eventCh) > 0 { // events that came before the result
				onEvent(<-eventCh)
			}
			if m == nil {
				return nil, p.refused
			}
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return nil, nats.ErrNoResponders
			}
			return m, nil
		case <-ctx.Done():
			r.forget(token, p)
			return nil, ctx.Err()
		case <-r.done:
			r.forget(token, p)
			return nil, ErrRequesterClosed
		}
	}
}

// forget removes p, waiting under token, unless the dispatcher or refuse
// took it already: then it sets p.taken.
func (r *Requester) forget(token uint64, p *pending) {
	if r.waiting.take(token) == nil {
		p.taken = true
	}
}

// publish sends msg with the reply subject of token. A message without
// header goes without a copy of it.
func (r *Requester) publish(msg *nats.Msg, token uint64) error {
	var buf [64]byte
	reply := string(strconv.AppendUint(append(buf[:0], r.prefix...), token, 36))
	if msg.Header == nil {
		return r.nc.PublishRequest(msg.Subject, reply, msg.Data)
	}
	out := *msg
	out.Reply = reply
	return r.nc.PublishMsg(&out)
}

// Publish and subscribe permission violations as NATS words them.
var (
	publishRefused   = regexp.MustCompile(`(?i)publish to "([^"]+)"`)
	subscribeRefused = regexp.MustCompile(`(?i)subscription to "([^"]+)"`)
)

// refuse ends, with err, the requests that NATS refused: those published
// on the subject a publish permission violation names, or all of them
// when the requester's inbox may not be subscribed. Other errors are not
// the requester's.
func (r *Requester) refuse(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	subject, all := "", false
	if m := publishRefused.FindStringSubmatch(err.Error()); m != nil {
		subject = m[1]
	} else if m := subscribeRefused.FindStringSubmatch(err.Error()); m != nil && m[1] == r.prefix+"*" {
		all = true
		err = fmt.Errorf("%w: %w", ErrInboxRefused, err)
		r.inbox.Store(&err)
	} else {
		return
	}
	for _, p := range r.waiting.takeIf(func(p *pending) bool { return all || p.subject == subject }) {
		p.refused = err
		p.reply <- nil
	}
}

// Close unsubscribes, stops the requester's goroutine and ends the
// requests still waiting with ErrRequesterClosed. It is idempotent.
func (r *Requester) Close() {
	r.once.Do(func() {
		_ = r.sub.Unsubscribe()
		close(r.done)
		<-r.stopped
	})
}
