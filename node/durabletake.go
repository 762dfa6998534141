package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/durable"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// take is the taker: it takes over the durable requests whose lease
// lapsed (the watch) and, every sweepEvery, those nobody runs (a lapse no
// watcher saw). It runs until the node closes.
func (d *durables) take(store *durable.Store) {
	fr := d.fr
	stopWatch, err := store.WatchLapses(fr.ctx, func(key string) {
		select {
		case d.lapsed <- key:
		default: // the next sweep finds it
		}
	})
	if err != nil {
		fr.log.Warn("durable requests: lapsed leases not watched; found by the sweep only", "error", err)
	} else {
		defer stopWatch()
	}
	d.sweep(store) // a restart of the whole cluster leaves requests nobody runs
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case key := <-d.lapsed:
			d.takeOver(store, key, false)
		case <-t.C:
			d.sweep(store)
		case <-fr.quit:
			return
		case <-fr.ctx.Done():
			return
		}
	}
}

// sweep takes over the requests that have a record and no lease.
func (d *durables) sweep(store *durable.Store) {
	if d.fr.draining.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(d.fr.ctx, storeTimeout)
	keys, err := store.Orphans(ctx, maxOrphans)
	cancel()
	if err != nil && !errors.Is(err, durable.ErrTooMany) {
		if ok, held := d.fr.logs.Allow("durable sweep"); ok {
			d.fr.log.Warn("durable requests: sweep failed", "error", err, "failed_since_last_log", held)
		}
		return
	}
	for _, key := range keys {
		d.takeOver(store, key, true)
	}
}

// takeOver runs the request of key here if nobody runs it: its lease
// lapsed, or (swept) it has none. A request just accepted has no lease
// for a moment: the sweep leaves it to its planner for a lease's TTL.
func (d *durables) takeOver(store *durable.Store, key string, swept bool) {
	fr := d.fr
	if fr.draining.Load() || d.running.Load() >= int64(fr.cfg.Limits.MaxRequests) {
		return // another node takes it
	}
	ctx, cancel := context.WithTimeout(fr.ctx, storeTimeout)
	rec, err := store.Record(ctx, key)
	cancel()
	switch {
	case errors.Is(err, durable.ErrNotFound):
		return // finished
	case err != nil:
		if ok, held := fr.logs.Allow("durable take over"); ok {
			fr.log.Warn("durable request not taken over", "key", key, "error", err, "failed_since_last_log", held)
		}
		return
	}
	if swept && time.Since(time.UnixMilli(rec.CreatedMS)) < store.LeaseTTL() {
		return
	}
	plan, bad := d.replan(rec)
	fr.log.Info("taking over a durable request", "request_id", rec.ID, "swept", swept)
	fr.goOwned(func() { d.runHere(store, key, rec, plan, false, bad) })
}

// replan plans a recorded request again; a body that does not read or
// plan is the error the request ends with.
func (d *durables) replan(rec *durable.Record) (*planner.Plan, *schema.Error) {
	req, _, err := codec.ReadSized(codec.MsgPack, rec.Body, codec.MaxDecoded, schema.ReadRequest)
	if err != nil {
		return nil, d.storeError(errors.Join(durable.ErrCorrupt, err), "read the recorded request")
	}
	plan, err := planner.New(req, d.fr.cfg.Limits.planner())
	if err != nil {
		return nil, schema.AsError(err)
	}
	return plan, nil
}

// liveStatus is the Status of a request recorded and not finished: running
// when a planner holds its lease, else accepted.
func (d *durables) liveStatus(store *durable.Store, key string, rec *durable.Record) *schema.Status {
	st := &schema.Status{ID: rec.ID, Status: schema.StatusAccepted, Steps: int64(rec.Steps)}
	ctx, cancel := context.WithTimeout(d.fr.ctx, storeTimeout)
	defer cancel()
	if h, err := store.Holder(ctx, key); err == nil && h != "" {
		st.Status, st.Planner = schema.StatusRunning, plannerOf(h)
	}
	if n, err := store.CountSteps(ctx, key); err == nil {
		st.StepsDone = int64(n)
	}
	return st
}

// status is the Status of the request of key (id the caller named).
func (d *durables) status(store *durable.Store, key, id string) *schema.Status {
	ctx, cancel := context.WithTimeout(d.fr.ctx, storeTimeout)
	defer cancel()
	f, err := store.Final(ctx, key)
	if err == nil {
		return d.finalStatus(f)
	}
	if !errors.Is(err, durable.ErrNotFound) {
		return &schema.Status{ID: id, Status: schema.StatusUnknown, Error: d.storeError(err, "read the request's outcome")}
	}
	rec, err := store.Record(ctx, key)
	switch {
	case errors.Is(err, durable.ErrNotFound):
		// Finished between the two reads?
		if f, err := store.Final(ctx, key); err == nil {
			return d.finalStatus(f)
		}
		return &schema.Status{ID: id, Status: schema.StatusUnknown}
	case err != nil:
		return &schema.Status{ID: id, Status: schema.StatusUnknown, Error: d.storeError(err, "read the request")}
	}
	return d.liveStatus(store, key, rec)
}

// onStatus answers a status query (docs/PROTOCOL.md §4.8) on an owned
// goroutine: it may wait for the request to end.
func (d *durables) onStatus(m *nats.Msg) {
	if !d.queries.TryAcquire(1) {
		// As many queries as the bound are being answered: refused
		// unread, as an rpc request past max_requests is.
		_, reply, _ := mesh.Codecs(m, false)
		d.respondStatus(m, reply, &schema.Status{Status: schema.StatusUnknown, Error: &schema.Error{
			Code: schema.CodeOverloaded, Node: d.fr.cfg.NodeID,
			Message: fmt.Sprintf("node %s answers as many status queries as the limit max_status_queries=%d allows", d.fr.cfg.NodeID, maxStatusQueries),
			Details: map[string]any{"limit": "max_status_queries", "max": int64(maxStatusQueries), "unread": true}}})
		return
	}
	if !d.fr.goOwned(func() { defer d.queries.Release(1); d.answerStatus(m) }) {
		d.queries.Release(1)
	}
}

// maxStatusBody bounds what a status query decodes to.
const maxStatusBody = 64 << 10

// answerStatus reads a status query and answers it.
func (d *durables) answerStatus(m *nats.Msg) {
	fr := d.fr
	q, _, reply, err := mesh.ReadSized(m, maxStatusBody, false, schema.ReadStatusRequest)
	if err != nil {
		id := ""
		if q != nil {
			id = q.ID
		}
		d.respondStatus(m, reply, &schema.Status{ID: id, Status: schema.StatusUnknown, Error: schema.AsError(err)})
		return
	}
	caller, err := fr.caller(m)
	if err != nil {
		fr.denied(q.ID, caller, "", err)
		d.respondStatus(m, reply, &schema.Status{ID: q.ID, Status: schema.StatusUnknown,
			Error: schema.Wrap(schema.CodePermissionDenied, err, "the caller's identity cannot be read")})
		return
	}
	store, e := d.current(fr.ctx)
	if e != nil {
		d.respondStatus(m, reply, &schema.Status{ID: q.ID, Status: schema.StatusUnknown, Error: e})
		return
	}
	key := durable.Key(caller.Key(), q.ID)
	st := d.status(store, key, q.ID)
	if q.WaitMS > 0 && st.Error == nil && (st.Status == schema.StatusRunning || st.Status == schema.StatusAccepted) && d.waits.TryAcquire(1) {
		ctx, cancel := context.WithTimeout(fr.ctx, time.Duration(q.WaitMS)*time.Millisecond)
		if _, err := store.WaitFinal(ctx, key); err == nil {
			st = d.status(store, key, q.ID)
		}
		cancel()
		d.waits.Release(1)
	}
	d.respondStatus(m, reply, st)
}

// respondStatus sends st in c.
func (d *durables) respondStatus(m *nats.Msg, c codec.Codec, st *schema.Status) {
	if err := mesh.Respond(d.fr.nc, m, c, st, func(problem *schema.Error) any {
		return &schema.Status{ID: st.ID, Status: st.Status, Planner: st.Planner, Steps: st.Steps, StepsDone: st.StepsDone,
			Result: map[string]any{}, Error: problem}
	}); err != nil {
		d.fr.replyFailed("status", st.ID, err)
	}
}

// markCancel records the caller's cancel of a durable request, so that it
// survives its planner: every node that plans receives the cancel, and
// marks it when the request is recorded.
func (d *durables) markCancel(callerKey, id string) {
	store := d.store.Load()
	if store == nil || !d.waits.TryAcquire(1) {
		return
	}
	if !d.fr.goOwned(func() {
		defer d.waits.Release(1)
		key := durable.Key(callerKey, id)
		ctx, cancel := context.WithTimeout(d.fr.ctx, storeTimeout)
		defer cancel()
		err := store.Cancel(ctx, key)
		if err != nil && !errors.Is(err, durable.ErrNotFound) && !errors.Is(err, durable.ErrFinished) {
			d.fr.log.Warn("durable request cancel not recorded", "request_id", id, "error", err)
		}
	}) {
		d.waits.Release(1)
	}
}
