package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// Durable requests (docs/PROTOCOL.md §4.8): Submit hands one to the
// cluster and returns at once; Status says where it is; Get returns its
// outcome as Run would have. A durable request sent with Run (Durable set,
// Submit not) waits for its response as any other, and survives its
// planner: another node takes it over and answers.

// ErrNotEnded matches (errors.Is) Get's error for a durable request that
// has not ended: accepted, or running. The error is a *StatusError, which
// holds the request's Status.
var ErrNotEnded = errors.New("client: durable request not ended")

// ErrUnknownRequest matches (errors.Is) Get's error for an id that names
// no durable request of this caller: never submitted, or its outcome
// outlived its result_ttl_ms. The error is a *StatusError.
var ErrUnknownRequest = errors.New("client: no such durable request")

// StatusError is Get's error for a durable request that has no outcome to
// return: Status.Status is "accepted" or "running" (errors.Is
// ErrNotEnded), or "unknown" (errors.Is ErrUnknownRequest).
type StatusError struct {
	Status *schema.Status
}

func (e *StatusError) Error() string {
	st := e.Status
	if st.Status == schema.StatusUnknown {
		return fmt.Sprintf("no durable request %s of this caller (never submitted, or its outcome expired)", schema.Clip(st.ID))
	}
	where := ""
	if st.Planner != "" {
		where = " on " + st.Planner
	}
	return fmt.Sprintf("durable request %s has not ended: %s%s, %d of %d steps done",
		schema.Clip(st.ID), st.Status, where, st.StepsDone, st.Steps)
}

// Is matches ErrNotEnded or ErrUnknownRequest, by the status.
func (e *StatusError) Is(target error) bool {
	if e.Status.Status == schema.StatusUnknown {
		return target == ErrUnknownRequest
	}
	return target == ErrNotEnded
}

// Submit hands req to the cluster as a durable request and returns once
// the cluster has recorded it, with its Status ("accepted"; or, when a
// request with its id exists already, that request's Status: a request id
// runs once). req gets Durable and Submit set and, without an id, one the
// client picks (in the Status returned). The request's budget is its own
// TimeoutMS (the cluster's default without one), not ctx's, which bounds
// only the submission.
//
// A refused submission returns the Status and its *schema.Error:
// STORE_UNAVAILABLE when the cluster has no JetStream, INVALID_REQUEST
// (details.id) when the id names a request with another body, the
// request's own faults as Run would. Arguments passed by reference
// (docs/PROTOCOL.md §4.7) are uploaded and left in the bucket for the
// request, which may run later; its max age removes them.
func (c *Client) Submit(ctx context.Context, req *schema.Request) (*schema.Status, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	ctx, cancel := c.deadline(ctx, 0)
	defer cancel()
	r := *req
	r.Durable, r.Submit = true, true
	r.Stream, r.Progress = false, false // the answer is one Status
	if r.ID == "" {
		r.ID = c.nextID()
	}
	var up uploads
	if err := c.prepareCmds(ctx, &r, &up); err != nil {
		c.objs.delete(r.ID, up, "argument")
		return nil, err
	}
	st, err := c.submit(ctx, &r)
	if refused(st, err) {
		c.objs.delete(r.ID, up, "argument") // nothing will read them
	}
	return st, err
}

// refused reports whether a submission's answer says it was not taken.
func refused(st *schema.Status, err error) bool {
	if st != nil {
		return st.Status == schema.StatusUnknown && st.Error != nil
	}
	var se *schema.Error
	return errors.As(err, &se) && se.Code != schema.CodeTimeout && se.Code != schema.CodeCancelled &&
		se.Code != schema.CodeNodeUnavailable
}

// submit sends r, a durable request to submit, on the rpc subject until a
// node answers it or it is clear that none will.
func (c *Client) submit(ctx context.Context, r *schema.Request) (*schema.Status, error) {
	msg, err := c.newMsg(c.subj.RPC(), r, "request")
	if err != nil {
		return nil, err
	}
	overloaded, absent := 0, 0
	for {
		m, err := c.ask(ctx, msg, "rpc")
		var nobody *nobodyError
		if errors.As(err, &nobody) {
			if !absentWait(ctx, &absent) {
				return nil, nobody.e
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := readStatus(m, r.ID, "submission")
		if overloaded < 2 && st == nil && unread(schema.AsError(err)) && planner.Retryable(err) {
			overloaded++ // a node at a limit did not read it: nothing ran
			continue
		}
		if err == nil && st.Status == schema.StatusUnknown && st.Error != nil {
			err = st.Error
		}
		return st, err
	}
}

// absentWait pauses before sending again a message that found no
// responders (rpcAbsentWaits), counting the pauses in *absent; false when
// they are all spent or ctx ended.
func absentWait(ctx context.Context, absent *int) bool {
	if *absent >= len(rpcAbsentWaits) {
		return false
	}
	t := time.NewTimer(rpcAbsentWaits[*absent])
	defer t.Stop()
	select {
	case <-t.C:
		*absent++
		return true
	case <-ctx.Done():
		return false
	}
}

// Status asks the cluster where the durable request id of this caller is
// (P.<cluster>.status). An id no durable request of this caller has
// answers status "unknown" and no error. A query the cluster refused
// (STORE_UNAVAILABLE, …) returns the Status and its *schema.Error; no node
// to answer is NO_ROUTE. Without a deadline on ctx the query waits
// Config.Timeout.
func (c *Client) Status(ctx context.Context, id string) (*schema.Status, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkCancelID(id); err != nil {
		return nil, err
	}
	ctx, cancel := c.deadline(ctx, 0)
	defer cancel()
	return c.queryStatus(ctx, id, 0)
}

// Get returns the outcome of the durable request id of this caller as the
// *schema.Response Run would have returned (id, results, errors, error),
// with resp.Error as the error when it is set, like Run. Results passed by
// reference are fetched as Run fetches them (unless Config.Objects.KeepRefs)
// but not deleted: the outcome is kept for its result_ttl_ms.
//
// A request that has not ended returns a *StatusError (errors.Is
// ErrNotEnded) holding its Status; with wait, Get asks again, each query
// waiting on the node for the request to end (up to a minute), until it
// ends or ctx ends. Without a deadline on ctx, Get without wait waits
// Config.Timeout for the answer, and Get with wait until the request ends.
// An id of no durable request of this caller is a *StatusError too
// (errors.Is ErrUnknownRequest).
func (c *Client) Get(ctx context.Context, id string, wait bool) (*schema.Response, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkCancelID(id); err != nil {
		return nil, err
	}
	var st *schema.Status
	var err error
	if wait {
		st, err = c.waitStatus(ctx, id)
	} else {
		qctx, cancel := c.deadline(ctx, 0)
		st, err = c.queryStatus(qctx, id, 0)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	if !schema.StatusEnded(st.Status) {
		return nil, &StatusError{Status: st}
	}
	resp := responseOf(st)
	if rerr := c.objs.results(ctx, resp, c.cfg.Objects.KeepRefs, false); rerr != nil && resp.Error == nil {
		return resp, rerr
	}
	if resp.Error != nil {
		return resp, resp.Error
	}
	return resp, nil
}

// responseOf is the response of an ended request, from its Status: a
// failed one without an error gets INTERNAL, a cancelled one CANCELLED,
// so that the response always says it failed.
func responseOf(st *schema.Status) *schema.Response {
	resp := &schema.Response{ID: st.ID, Results: st.Result, Errors: st.Errors, Error: st.Error}
	if resp.Results == nil {
		resp.Results = map[string]any{}
	}
	if resp.Error != nil {
		return resp
	}
	switch st.Status {
	case schema.StatusFailed:
		resp.Error = schema.Errorf(schema.CodeInternal, "durable request %s failed without an error", schema.Clip(st.ID))
	case schema.StatusCancelled:
		resp.Error = schema.Errorf(schema.CodeCancelled, "durable request %s was cancelled", schema.Clip(st.ID))
	}
	return resp
}

// statusPoll is the least time between two status queries of a Get that
// waits, should a node answer a waiting query at once.
const statusPoll = 100 * time.Millisecond

// waitStatus queries id's status until the request ends, no such request
// exists, or ctx ends (then: the last status, not ended).
func (c *Client) waitStatus(ctx context.Context, id string) (*schema.Status, error) {
	var last *schema.Status
	for {
		wait, ok := statusWait(ctx)
		if !ok && last != nil {
			return last, nil
		}
		began := time.Now()
		st, err := c.queryStatus(ctx, id, wait)
		if err != nil && last != nil && ctx.Err() != nil {
			return last, nil // the answer came too late: the last one stands
		}
		if err != nil || !ok || st.Status == schema.StatusUnknown || schema.StatusEnded(st.Status) {
			return st, err
		}
		last = st
		pause(ctx, statusPoll-time.Since(began))
	}
}

// pause waits d, or until only the room for a reply is left before ctx's
// deadline, or ctx ends.
func pause(ctx context.Context, d time.Duration) {
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		d = min(d, left-replyRoom(left))
	}
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// minStatusWait is the shortest wait a status query asks for: with less
// time left, a waiting Get stops asking.
const minStatusWait = 50 * time.Millisecond

// statusWait is how long a status query sent now may ask the node to wait
// (wait_ms) for its answer to arrive before ctx's deadline; false when
// there is no time left for a wait.
func statusWait(ctx context.Context) (time.Duration, bool) {
	wait := time.Duration(schema.MaxStatusWait) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		wait = min(wait, left-replyRoom(left))
	}
	if wait < minStatusWait {
		return 0, false
	}
	return wait, true
}

// replyRoom is the part of a wait of left that is kept for a reply to
// arrive before the caller's deadline.
func replyRoom(left time.Duration) time.Duration {
	return min(max(left/10, 5*time.Millisecond), 250*time.Millisecond)
}

// queryStatus sends one status query, asking the node to answer once the
// request ended or after wait, and reads its answer. A refused query
// returns the Status and its error.
func (c *Client) queryStatus(ctx context.Context, id string, wait time.Duration) (*schema.Status, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+c.cfg.Timeout)
		defer cancel()
	}
	msg, err := c.newMsg(c.subj.Status(), &schema.StatusRequest{ID: id, WaitMS: wait.Milliseconds()}, "status query")
	if err != nil {
		return nil, err
	}
	m, err := c.ask(ctx, msg, "status")
	var nobody *nobodyError
	if errors.As(err, &nobody) {
		return nil, nobody.e
	}
	if err != nil {
		return nil, err
	}
	st, err := readStatus(m, id, "status query")
	if err != nil {
		return nil, err
	}
	if st.Status == schema.StatusUnknown && st.Error != nil {
		return st, st.Error
	}
	return st, nil
}

// newMsg encodes v, a request or query, in the client's codec, as a
// message to subject that asks for its answer in the same codec.
func (c *Client) newMsg(subject string, v any, what string) (*nats.Msg, error) {
	data, err := c.cfg.Codec.Encode(v)
	if err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "%s does not encode", what)
	}
	ct := c.cfg.Codec.ContentType()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
		codec.HeaderContentType: {ct}, codec.HeaderAccept: {ct}}}
	if !bus.Fits(c.nc, msg) {
		return nil, mesh.TooLarge(what, len(data), c.nc.MaxPayload())
	}
	return msg, nil
}

// ask sends msg and returns its reply, the errors typed as rpc types
// them; "no responders" comes back as a *nobodyError naming the subject
// (kind: "rpc" or "status").
func (c *Client) ask(ctx context.Context, msg *nats.Msg, kind string) (*nats.Msg, error) {
	if c.nc.Status() != nats.CONNECTED {
		return nil, schema.Errorf(schema.CodeNodeUnavailable, "not connected to NATS (%s)", c.nc.Status())
	}
	m, err := c.req.Request(ctx, msg)
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, nats.ErrNoResponders):
		return nil, &nobodyError{schema.Errorf(schema.CodeNoRoute, "no node of cluster %s answers %s (no responders on %s)",
			c.cfg.Cluster, kind, msg.Subject)}
	case errors.Is(err, nats.ErrTimeout):
		return nil, schema.Ended(ctx, fmt.Errorf("%w: %w", context.DeadlineExceeded, err), "no answer to the "+kind+" in time", "cancelled")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, schema.Ended(ctx, err, "no answer to the "+kind+" in time", "cancelled")
	case errors.Is(err, nats.ErrPermissionViolation):
		return nil, mesh.PermissionDenied(err, "send "+kind+" requests to cluster "+c.cfg.Cluster)
	}
	return nil, schema.Wrap(schema.CodeNodeUnavailable, err, "%s", kind)
}

// readStatus reads the Status answering a query or submission of id. A
// node that answered a Response instead (one that refused the message
// before reading it, or that does not run durable requests) gives its
// error; any other answer that is no Status of id is INTERNAL.
func readStatus(m *nats.Msg, id, what string) (*schema.Status, error) {
	st, err := mesh.ReadReply(m, schema.ReadStatus)
	if err != nil {
		if resp, rerr := mesh.ReadReply(m, schema.ReadResponse); rerr == nil && resp.Error != nil {
			return nil, resp.Error
		}
		return nil, mesh.BadReply(err, "bad answer to the %s (no status: do the cluster's nodes run durable requests?)", what)
	}
	if st.ID != "" && st.ID != id {
		return nil, schema.Errorf(schema.CodeInternal, "bad answer to the %s of %s: the status of %s", what, schema.Clip(id), schema.Clip(st.ID))
	}
	if st.ID == "" {
		st.ID = id
	}
	return st, nil
}
