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

// Key prefixes in the requests bucket.
const (
	recordPre = "r."
	stepPre   = "s."
	cancelPre = "x."
	finalPre  = "f."
)

// create creates key in kv with value: its revision, or exists when the
// key is there already.
func create(ctx context.Context, kv jetstream.KeyValue, key string, value []byte,
	opts ...jetstream.KVCreateOpt) (rev uint64, exists bool, err error) {
	err = riding(ctx, func() error {
		rev, err = kv.Create(ctx, key, value, opts...)
		return err
	})
	switch {
	case err == nil:
		return rev, false, nil
	case keyExists(err):
		return 0, true, nil
	default:
		return 0, false, wrap("create "+key, err)
	}
}

// Accept records r (its V set to Version) once per Key(r.Caller, r.ID).
// It returns (nil, nil, nil) when r was recorded now: the caller runs it.
// It returns (existing, nil, nil) when the key has a record already (the
// request runs or waits for a planner: compare existing.Sum with r's),
// and (nil, final, nil) when the key finished and its Final is still kept.
// Of concurrent Accepts of one key exactly one gets (nil, nil, nil): the
// record is a KV create. A request that finished meanwhile is never run
// again: the Final is looked for after the record is created, and the
// record then removed again.
func (s *Store) Accept(ctx context.Context, r *Record) (existing *Record, final *Final, err error) {
	if r == nil || r.ID == "" {
		return nil, nil, fmt.Errorf("%w: accept: no request id", ErrInvalid)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	key := Key(r.Caller, r.ID)
	rec := *r
	rec.V = Version
	b, err := encode(&rec)
	if err != nil {
		return nil, nil, err
	}
	for range 3 { // the record may be removed between the create and the read
		rev, exists, err := create(ctx, s.requests, recordPre+key, b)
		if err != nil {
			return nil, nil, err
		}
		if !exists {
			return s.accepted(ctx, key, rev)
		}
		existing, err := s.Record(ctx, key)
		if !errors.Is(err, ErrNotFound) {
			return existing, nil, err
		}
		final, err := s.Final(ctx, key)
		if !errors.Is(err, ErrNotFound) {
			return nil, final, err
		}
	}
	return nil, nil, fmt.Errorf("durable: accept %s: its record kept coming and going", key)
}

// accepted ends Accept after the record of key was created at rev: when the
// key has a Final, the record goes again (revision-guarded) and the Final
// is returned. A failed removal leaves it to Orphans, which removes
// records of finished requests.
func (s *Store) accepted(ctx context.Context, key string, rev uint64) (*Record, *Final, error) {
	final, err := s.Final(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil, nil
	case err != nil: // unknown whether it finished: take the record back
		_ = s.requests.Purge(ctx, recordPre+key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
		return nil, nil, err
	}
	_ = s.requests.Purge(ctx, recordPre+key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
	return nil, final, nil
}

// Record returns the record of key, ErrNotFound when there is none.
func (s *Store) Record(ctx context.Context, key string) (*Record, error) {
	b, _, err := s.read(ctx, recordPre, key)
	if err != nil {
		return nil, err
	}
	return DecodeRecord(b)
}

// Final returns the Final of key, ErrNotFound when there is none (never
// finished, or its TTL passed).
func (s *Store) Final(ctx context.Context, key string) (*Final, error) {
	b, _, err := s.read(ctx, finalPre, key)
	if err != nil {
		return nil, err
	}
	return DecodeFinal(b)
}

// read gets pre+key from the requests bucket.
func (s *Store) read(ctx context.Context, pre, key string) ([]byte, uint64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	return get(ctx, s.requests, pre+key)
}

// recordRevision is the revision of key's record: entries of key older
// than it belong to an earlier run of the same id and are ignored.
func (s *Store) recordRevision(ctx context.Context, key string) (uint64, error) {
	_, rev, err := get(ctx, s.requests, recordPre+key)
	return rev, err
}

// RecordStep records value as the result of step of the request key,
// once: when the step has a result recorded already, that one is returned
// and value dropped, so that every planner that runs the step goes on
// with the same result. A result recorded before the request's record
// (by an earlier run of the same id) does not count and is replaced;
// telling them apart reads the record, ErrNotFound when there is none.
func (s *Store) RecordStep(ctx context.Context, key, step string, value []byte) (recorded []byte, err error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	b, err := encode(&stepValue{V: Version, Name: step, Value: value})
	if err != nil {
		return nil, err
	}
	sk := stepPre + key + "." + stepHash(step)
	for range 3 { // a stale result replaced meanwhile by another planner
		_, exists, err := create(ctx, s.requests, sk, b)
		if err != nil || !exists {
			return value, err
		}
		recorded, err := s.recordedStep(ctx, key, sk, step, b)
		if recorded != nil || err != nil {
			return recorded, err
		}
	}
	return nil, fmt.Errorf("durable: step %q of %s: its result kept changing", step, key)
}

// recordedStep reads the result of step recorded at sk. A result older than
// the request's record (left by an earlier run of the same id) is replaced
// by b, revision-guarded; nil, nil means another planner replaced it first.
func (s *Store) recordedStep(ctx context.Context, key, sk, step string, b []byte) ([]byte, error) {
	raw, rev, err := get(ctx, s.requests, sk)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	recRev, err := s.recordRevision(ctx, key)
	if err != nil {
		return nil, err
	}
	if rev < recRev {
		if _, err := s.requests.Update(ctx, sk, b, rev); err != nil {
			if keyExists(err) {
				return nil, nil
			}
			return nil, wrap("update "+sk, err)
		}
		sv, err := decodeStep(b)
		return sv.Value, err
	}
	sv, err := decodeStep(raw)
	if err != nil {
		return nil, err
	}
	if sv.Name != step {
		return nil, fmt.Errorf("%w: step key %s holds step %q, not %q", ErrCorrupt, sk, clip(sv.Name), clip(step))
	}
	if sv.Value == nil {
		sv.Value = []byte{}
	}
	return sv.Value, nil
}

// Steps returns the recorded result of every step of the request key, by
// step name: at most MaxSteps (ErrTooMany beyond). The request must have
// a record (ErrNotFound).
func (s *Store) Steps(ctx context.Context, key string) (map[string][]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	recRev, err := s.recordRevision(ctx, key)
	if err != nil {
		return nil, err
	}
	steps := map[string][]byte{}
	var bad error
	err = scan(ctx, s.requests, stepPre+key+".*", func(e jetstream.KeyValueEntry) bool {
		if e.Revision() < recRev {
			return true
		}
		sv, err := decodeStep(e.Value())
		switch {
		case err != nil:
			bad = fmt.Errorf("step key %s: %w", e.Key(), err)
		case stepPre+key+"."+stepHash(sv.Name) != e.Key():
			bad = fmt.Errorf("%w: step key %s holds step %q", ErrCorrupt, e.Key(), clip(sv.Name))
		case len(steps) == MaxSteps:
			bad = fmt.Errorf("%w: request %s has more than %d steps recorded", ErrTooMany, key, MaxSteps)
		default:
			steps[sv.Name] = sv.Value
		}
		return bad == nil
	}, jetstream.IgnoreDeletes())
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, err
	}
	return steps, nil
}

// CountSteps returns how many steps of the request key have a result
// recorded (reading keys only). A request without a record has none.
func (s *Store) CountSteps(ctx context.Context, key string) (int, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	recRev, err := s.recordRevision(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	err = scan(ctx, s.requests, stepPre+key+".*", func(e jetstream.KeyValueEntry) bool {
		if e.Revision() > recRev {
			n++
		}
		return true
	}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	return n, err
}

// Cancel marks the request key cancelled, for whichever planner runs it.
// It returns ErrFinished when the request has finished already (nothing
// to cancel) and ErrNotFound when it has no record (the mark is then
// taken back).
func (s *Store) Cancel(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	rev, exists, err := create(ctx, s.requests, cancelPre+key, []byte{Version})
	if err != nil {
		return err
	}
	_, _, ferr := get(ctx, s.requests, finalPre+key)
	_, _, rerr := get(ctx, s.requests, recordPre+key)
	switch {
	case ferr == nil:
		err = fmt.Errorf("%w: %s", ErrFinished, key)
	case !errors.Is(ferr, ErrNotFound):
		return ferr
	case errors.Is(rerr, ErrNotFound):
		err = rerr
	default:
		return rerr
	}
	if !exists { // a mark after the finish (or with no request) would stay
		_ = s.requests.Purge(ctx, cancelPre+key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
	}
	return err
}

// Cancelled reports whether the request key was cancelled (a mark older
// than its record, from an earlier run of the id, does not count).
func (s *Store) Cancelled(ctx context.Context, key string) (bool, error) {
	_, rev, err := s.read(ctx, cancelPre, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	recRev, err := s.recordRevision(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	return err == nil && rev > recRev, err
}

// Finish is Settle, then Clean: the outcome recorded, then what the
// request left removed. Errors of Clean are returned (joined) with the
// Final, which stands all the same.
func (s *Store) Finish(ctx context.Context, key string, f *Final, ttl time.Duration) (*Final, error) {
	fin, err := s.Settle(ctx, key, f, ttl)
	if err != nil {
		return fin, err
	}
	return fin, s.Clean(ctx, key)
}

// Settle records f (its V set to Version) as the outcome of the request
// key, kept for ttl (at least MinResultTTL) by a per-key TTL. When the key
// has a Final already it returns that one and ErrFinished. The request's
// record, cancel mark and step results stay until Clean: a planner
// answers its caller in between. A record left by a planner that died
// before its Clean is cleaned by Orphans.
func (s *Store) Settle(ctx context.Context, key string, f *Final, ttl time.Duration) (*Final, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if f == nil || ttl < MinResultTTL {
		return nil, fmt.Errorf("%w: finish %s: no final or TTL %s below %s", ErrInvalid, key, ttl, MinResultTTL)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	fin := *f
	fin.V = Version
	b, err := encode(&fin)
	if err != nil {
		return nil, err
	}
	_, exists, err := create(ctx, s.requests, finalPre+key, b, jetstream.KeyTTL(ttl.Round(time.Second)))
	if err != nil {
		return nil, err
	}
	if exists {
		prev, err := s.Final(ctx, key)
		if err != nil {
			return nil, err
		}
		return prev, fmt.Errorf("%w: %s", ErrFinished, key)
	}
	return &fin, nil
}

// Clean removes what a finished request key leaves: its record, cancel
// mark and steps, purged from the stream (no markers stay), the three
// purges sent at once.
func (s *Store) Clean(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	subjects := [...]string{recordPre + key, cancelPre + key, stepPre + key + ".*"}
	var errs [len(subjects)]error
	var wg sync.WaitGroup
	for i, subj := range subjects {
		wg.Go(func() {
			errs[i] = wrap("purge "+subj, s.reqStream.Purge(ctx, jetstream.WithPurgeSubject(s.reqPre+subj)))
		})
	}
	wg.Wait()
	return errors.Join(errs[:]...)
}

// WaitFinal waits for the Final of key, watching for it, until it exists
// (returned at once when it does) or ctx ends (its error, wrapped, without
// ErrUnavailable).
// Give ctx a deadline: setting the watch up waits at most DefaultTimeout,
// but a JetStream that goes away afterwards is noticed only by ctx.
func (s *Store) WaitFinal(ctx context.Context, key string) (*Final, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	w, stop, err := watch(ctx, s.requests, finalPre+key)
	if err != nil {
		return nil, err
	}
	defer stop()
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, wrap("watch final "+key, errors.New("watch closed"))
			case e == nil || e.Operation() != jetstream.KeyValuePut:
				continue
			}
			return DecodeFinal(e.Value())
		case <-ctx.Done(): // a wait that ran out, not JetStream unreachable
			return nil, fmt.Errorf("durable: waiting for the final of %s: %w", key, ctx.Err())
		}
	}
}

// Orphans returns up to limit keys of requests that have a record and no
// lease: nobody runs them (their planner died, or the whole cluster
// restarted). A record younger than the lease TTL (its server timestamp
// against this host's clock) is left out, giving its planner time to take
// the lease; Acquire decides all the same who runs
// an orphan. A record whose request has a Final (its planner died while
// finishing) is removed instead of returned. Each bucket is read up to
// MaxScan keys (ErrTooMany beyond).
func (s *Store) Orphans(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	leased, err := s.leased(ctx)
	if err != nil {
		return nil, err
	}
	young := time.Now().Add(-s.leaseTTL)
	var keys []string
	n := 0
	err = scan(ctx, s.requests, recordPre+"*", func(e jetstream.KeyValueEntry) bool {
		n++
		key := strings.TrimPrefix(e.Key(), recordPre)
		if !leased[key] && e.Created().Before(young) {
			keys = append(keys, key)
		}
		return len(keys) < limit && n < MaxScan
	}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, err
	}
	return s.unfinished(ctx, keys)
}

// unfinished returns the keys that have no Final, and cleans up the
// others.
func (s *Store) unfinished(ctx context.Context, keys []string) ([]string, error) {
	out := keys[:0]
	for _, key := range keys {
		_, err := s.Final(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			out = append(out, key)
		case err == nil:
			_ = s.Clean(ctx, key)
		default:
			return nil, err
		}
	}
	return out, nil
}

// leased returns the keys that have a lease.
func (s *Store) leased(ctx context.Context) (map[string]bool, error) {
	leased := map[string]bool{}
	err := scan(ctx, s.leases, leasePre+"*", func(e jetstream.KeyValueEntry) bool {
		leased[strings.TrimPrefix(e.Key(), leasePre)] = true
		return len(leased) < MaxScan
	}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err == nil && len(leased) >= MaxScan {
		err = fmt.Errorf("%w: more than %d leases", ErrTooMany, MaxScan)
	}
	return leased, err
}
