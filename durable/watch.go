package durable

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// watch starts a KV watch of filter that lasts until the returned stop is
// called or ctx ends; setting it up waits no longer than ctx's deadline
// or DefaultTimeout, whichever comes first. stop ends the watch and waits
// until its subscription delivers nothing more.
func watch(ctx context.Context, kv jetstream.KeyValue, filter string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, func(), error) {
	wctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(DefaultTimeout, cancel)
	w, err := kv.Watch(wctx, filter, opts...)
	timedOut := !t.Stop()
	if err == nil && timedOut {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		if w != nil {
			drain(w)
		}
		if timedOut && !unavailable(err) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, nil, wrap("watch "+filter, err)
	}
	return w, func() { cancel(); drain(w) }, nil
}

// drain reads w's entries until the watch is closed: its subscription is
// ended by the cancelled context, and until then its delivery may be
// waiting for room in the entries' channel.
func drain(w jetstream.KeyWatcher) {
	for range w.Updates() { //nolint:revive // discarding entries is the point
	}
}

// scan reads the entries of kv that match filter as they are now (one per
// key, the latest), calling each until it returns false or none is left.
func scan(ctx context.Context, kv jetstream.KeyValue, filter string, each func(jetstream.KeyValueEntry) bool,
	opts ...jetstream.WatchOpt) error {
	w, stop, err := watch(ctx, kv, filter, opts...)
	if err != nil {
		return err
	}
	defer stop()
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return wrap("watch "+filter, nats.ErrConnectionClosed)
			case e == nil: // all the entries that were there are read
				return nil
			case !each(e):
				return nil
			}
		case <-ctx.Done():
			return wrap("watch "+filter, ctx.Err())
		}
	}
}
