package durable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leasePre prefixes the keys of the leases bucket.
const leasePre = "l."

// Lease is the right to run one durable request: the key l.<k> of the
// leases bucket holding the holder's id, renewed on a goroutine of its own
// every LeaseTTL/3 until Release or until it is lost.
type Lease struct {
	s           *Store
	key, holder string
	// rev is the revision of the last write; only the renewing goroutine
	// writes it until it ends, then Release reads it.
	rev  uint64
	lost chan struct{}
	// ctx ends the renewals when cancelled (cancel); done is closed when
	// they ended.
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	released sync.Once
	err      error
}

// Acquire takes the lease of the request key for holder (a node id). Only
// one holder has a key's lease at a time: the lease is a KV create. When
// another holds it, the error is a *LeasedError (wrapping ErrLeased) that
// names it. The Lease renews itself until Release, or until it is lost
// (Lost).
func (s *Store) Acquire(ctx context.Context, key, holder string) (*Lease, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if holder == "" {
		return nil, fmt.Errorf("%w: acquire %s: holder empty", ErrInvalid, key)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	for range 3 { // the lease may lapse between the create and the read
		rev, exists, err := create(ctx, s.leases, leasePre+key, []byte(holder))
		if err != nil {
			return nil, err
		}
		if !exists {
			return s.startLease(key, holder, rev), nil
		}
		b, _, err := get(ctx, s.leases, leasePre+key)
		switch {
		case err == nil:
			return nil, &LeasedError{Key: key, Holder: string(b)}
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	return nil, fmt.Errorf("durable: acquire %s: its lease kept coming and going", key)
}

// startLease starts renewing the lease written at rev.
func (s *Store) startLease(key, holder string, rev uint64) *Lease {
	l := &Lease{s: s, key: key, holder: holder, rev: rev, lost: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.renew(time.Now())
	return l
}

// Key is the request key the lease is for, Holder who holds it.
func (l *Lease) Key() string { return l.key }

// Holder is the id the lease was acquired for.
func (l *Lease) Holder() string { return l.holder }

// Lost is closed when the lease was lost: another holder has the key, or
// it lapsed, or it could not be renewed and the next try would come too
// close to when it lapses (counted from when the last renewal that
// succeeded was sent: a failed renewal less than a third of the TTL
// before that ends it, so that the holder stops a good while before the
// server removes the key). The holder must then stop running the request.
// A renewal that reached the server but whose answer was lost reads as
// lost too (the next one finds another revision): losing errs on the safe
// side, and the key then lapses for another to take. Release does not
// close it.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// renew rewrites the lease every TTL/3, each write revision-guarded; the
// last write that succeeded was sent at last. Each attempt waits at most
// TTL/3, and none runs past last+TTL, when the server removes the key.
func (l *Lease) renew(last time.Time) {
	defer close(l.done)
	ttl := l.s.leaseTTL
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		if !sent.Before(last.Add(ttl)) {
			close(l.lost)
			return
		}
		deadline := last.Add(ttl)
		if d := sent.Add(ttl / 3); d.Before(deadline) {
			deadline = d
		}
		actx, acancel := context.WithDeadline(l.ctx, deadline)
		rev, err := l.s.leases.Update(actx, leasePre+l.key, []byte(l.holder), l.rev)
		acancel()
		switch {
		case err == nil:
			l.rev, last = rev, sent
		case keyExists(err): // taken by another, or lapsed
			close(l.lost)
			return
		case !time.Now().Add(ttl / 3).Before(last.Add(ttl)):
			// The next attempt would come when the key may be gone and
			// another holder running the request: stop now, a tick
			// before, rather than after.
			close(l.lost)
			return
		}
	}
}

// stop ends the renewals and waits for them.
func (l *Lease) stop() {
	l.cancel()
	<-l.done
}

// Release stops renewing the lease and deletes it, revision-guarded, so
// that a lease lost meanwhile (another holder's now) is left alone: then
// there is nothing to release and Release returns nil. Later calls return
// the first call's result. When the delete fails (JetStream out of reach)
// the lease is not renewed any more and lapses within the TTL.
func (l *Lease) Release(ctx context.Context) error {
	l.released.Do(func() {
		l.stop()
		select {
		case <-l.lost:
			return
		default:
		}
		ctx, cancel := bounded(ctx)
		defer cancel()
		err := l.s.leases.Delete(ctx, leasePre+l.key, jetstream.LastRevision(l.rev))
		if err != nil && !keyExists(err) {
			l.err = wrap("release "+l.key, err)
		}
	})
	return l.err
}

// doneMark is the value of the lease of a request that finished (Done):
// no holder's id is it.
const doneMark = "\x00done"

// Done stops renewing the lease of a request whose outcome is recorded
// (and whose record is cleaned) and marks it done, revision-guarded: it
// lapses within the TTL, and WatchLapses does not report that lapse, so
// that no node looks at a request that finished. Like Release, later
// calls (of either) return the first call's result.
func (l *Lease) Done(ctx context.Context) error {
	l.released.Do(func() {
		l.stop()
		select {
		case <-l.lost:
			return
		default:
		}
		ctx, cancel := bounded(ctx)
		defer cancel()
		if _, err := l.s.leases.Update(ctx, leasePre+l.key, []byte(doneMark), l.rev); err != nil && !keyExists(err) {
			l.err = wrap("done "+l.key, err)
		}
	})
	return l.err
}

// Holder returns the id of who holds the lease of key, "" when nobody
// does.
func (s *Store) Holder(ctx context.Context, key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	b, _, err := get(ctx, s.leases, leasePre+key)
	if errors.Is(err, ErrNotFound) || string(b) == doneMark {
		return "", nil
	}
	return string(b), err
}

// maxDone bounds the leases marked done that WatchLapses remembers until
// they lapse; past it a lapse of one is reported (a harmless hint).
const maxDone = 1 << 16

// WatchLapses calls fn with the key of every lease that lapses (the
// server's marker when it expires) or is deleted (Release), except the
// lapse of a lease marked done (Lease.Done), from now on,
// until stop is called or ctx ends. fn runs on the watch's goroutine, one
// call at a time, and must be quick (hand the key over, do not run the
// request there). A lapse is seen about a quarter second after the TTL
// passed (230 to 270 ms measured with nats-server 2.15.2, TestLeaseLapse):
// the file store checks ages on a timer that fires at most every 250 ms.
// A lease deleted by Release may be reported again when its delete marker
// ages out; a key reported is a hint, to be checked (Record, Holder).
// Setting the watch up waits at most DefaultTimeout. stop ends the watch
// and waits for its goroutine; it may be called more than once.
func (s *Store) WatchLapses(ctx context.Context, fn func(key string)) (stop func(), err error) {
	w, stopWatch, err := watch(ctx, s.leases, leasePre+"*", jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer stopWatch()
		finished := map[string]struct{}{} // leases marked done, until they lapse
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				if key := strings.TrimPrefix(e.Key(), leasePre); lapsed(e, finished, key) {
					fn(key)
				}
			case <-quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}, nil
}

// lapsed reports whether watch entry e of key is a lapse to report: not a
// renewal, and not the lapse of a lease marked done, which finished keeps
// from its mark to its lapse.
func lapsed(e jetstream.KeyValueEntry, finished map[string]struct{}, key string) bool {
	_, wasDone := finished[key]
	if e.Operation() == jetstream.KeyValuePut {
		if string(e.Value()) == doneMark {
			if len(finished) < maxDone {
				finished[key] = struct{}{}
			}
		} else if wasDone {
			delete(finished, key)
		}
		return false
	}
	delete(finished, key)
	return !wasDone
}
