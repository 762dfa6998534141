package mesh

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// ErrRequesterClosed is a Request's error once its Requester is closed.
var ErrRequesterClosed = errors.New("mesh: requester closed")

// Requester sends requests and matches their replies on one inbox
// subscription of its own. nats.go's shared reply subscription keeps at
// most 64 MB of replies not yet handed to their requests, and hands each
// over under the connection's lock: a burst of large replies (many steps
// returning close to the max payload at once) overflowed it and replies
// were dropped. Here the buffer is unbounded (what is in flight is bounded
// by the caller, see Flow) and a reply is handed over with one map lookup.
type Requester struct {
	nc      *nats.Conn
	prefix  string // "<inbox>."
	sub     *nats.Subscription
	seq     atomic.Uint64
	waiting sync.Map // token → chan *nats.Msg
	done    chan struct{}
	once    sync.Once
}

// NewRequester subscribes the requester's inbox on nc.
func NewRequester(nc *nats.Conn) (*Requester, error) {
	r := &Requester{nc: nc, prefix: nc.NewInbox() + ".", done: make(chan struct{})}
	sub, err := nc.Subscribe(r.prefix+"*", r.onReply)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	r.sub = sub
	return r, nil
}

func (r *Requester) onReply(m *nats.Msg) {
	token, ok := strings.CutPrefix(m.Subject, r.prefix)
	if !ok {
		return
	}
	if v, ok := r.waiting.LoadAndDelete(token); ok {
		v.(chan *nats.Msg) <- m // buffered: one reply per request
	}
}

// Request publishes msg with a reply subject of the requester's and waits
// for the reply until ctx is done. "No responders" is nats.ErrNoResponders,
// as with nats.go's own requests. msg is not modified.
func (r *Requester) Request(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	token := strconv.FormatUint(r.seq.Add(1), 36)
	ch := make(chan *nats.Msg, 1)
	r.waiting.Store(token, ch)
	out := *msg
	out.Reply = r.prefix + token
	if err := r.nc.PublishMsg(&out); err != nil {
		r.waiting.Delete(token)
		return nil, err
	}
	select {
	case m := <-ch:
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	case <-ctx.Done():
		r.waiting.Delete(token)
		return nil, ctx.Err()
	case <-r.done:
		r.waiting.Delete(token)
		return nil, ErrRequesterClosed
	}
}

// Close unsubscribes and ends the requests still waiting with
// ErrRequesterClosed. It is idempotent.
func (r *Requester) Close() {
	r.once.Do(func() {
		close(r.done)
		if r.sub != nil {
			_ = r.sub.Unsubscribe()
		}
	})
}
