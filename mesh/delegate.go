package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// Pinned is planner.Delegator's: the table's only live node for fun, if
// that node plans requests (a node whose own rpc subject had no
// responders is left alone for noRPCFor).
func (e *Execer) Pinned(fun string, locs []string) (string, bool) {
	node, ok := e.Table.Pinned(fun, locs)
	if ok {
		if until, known := e.noRPC.Load(node); known && time.Now().Before(until.(time.Time)) {
			return "", false
		}
	}
	return node, ok
}

// noRPCFor is how long a node whose own rpc subject had no responders is
// not sent delegated steps.
const noRPCFor = time.Minute

// Delegate sends a sub-request to node's own rpc subject (docs/PROTOCOL.md
// §4.6) for it to plan and run, and returns its response. The node is
// tracked as for a step: declared dead meanwhile, the sub-request ends
// with NODE_UNAVAILABLE. A caller that gives up cancels it on the cluster's
// cancel subject. When nothing ran (no responders, the node full, the
// request refused before it was read or planned) the error wraps
// planner.ErrNotDelegated.
//
// With a Requester the sub-request asks for split_results: results that do
// not fit one reply come in parts (docs/PROTOCOL.md §5.3), up to
// MaxPartBytes of them, and are returned together.
func (e *Execer) Delegate(ctx context.Context, node string, req *schema.Request) (*schema.Response, error) {
	if e.Conn.Status() != nats.CONNECTED {
		return nil, fmt.Errorf("%w: not connected", planner.ErrNotDelegated)
	}
	if e.Requester != nil {
		split := *req
		split.SplitResults = true
		req = &split
	}
	hello, _, _ := e.Table.Hello(node)
	cd := codec.Preferred(hello.Codecs)
	data, err := cd.Encode(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", planner.ErrNotDelegated, err)
	}
	msg := peerMsg(e.Subjects.NodeRPC(node), data, cd, hello)
	if !bus.Fits(e.Conn, &msg) {
		return nil, fmt.Errorf("%w: a sub-request of %d bytes", planner.ErrNotDelegated, len(data))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer e.Table.Track(node, cancel)()
	m, parts, err := e.requestParts(ctx, &msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		e.noRPC.Store(node, time.Now().Add(noRPCFor))
		return nil, fmt.Errorf("%w: node %s has no rpc responder", planner.ErrNotDelegated, node)
	case errors.Is(context.Cause(ctx), membership.ErrNodeLost):
		return nil, &schema.Error{Code: schema.CodeNodeUnavailable, Node: node,
			Message: fmt.Sprintf("node %s was lost while running delegated steps", node)}
	case err != nil && ctx.Err() != nil:
		e.cancelRequest(req.ID)
		return nil, ctx.Err()
	case errors.Is(err, ErrPartsTooLarge):
		return nil, &schema.Error{Code: schema.CodePayloadTooLarge, Node: node,
			Message: fmt.Sprintf("the results of the steps delegated to node %s come to more than %d bytes", node, e.maxPartBytes()),
			Details: map[string]any{"limit": "max_result_bytes", "max": e.maxPartBytes()}}
	case err != nil:
		return nil, schema.Wrap(schema.CodeNodeUnavailable, err, "delegating to node %s", node)
	}
	resp, err := ReadReply(m, schema.ReadResponse)
	if err != nil {
		return nil, BadReply(err, "node %s sent a bad rpc response", node)
	}
	if unplanned(resp.Error) {
		return nil, fmt.Errorf("%w: %w", planner.ErrNotDelegated, resp.Error)
	}
	if err := MergeParts("node "+node, resp, parts); err != nil {
		return nil, err
	}
	return resp, nil
}

// requestParts sends a delegated request and waits for its reply and, with
// a Requester, the parts that came before it.
func (e *Execer) requestParts(ctx context.Context, msg *nats.Msg) (*nats.Msg, []*nats.Msg, error) {
	if e.Requester == nil {
		m, err := e.request(ctx, msg)
		return m, nil, err
	}
	return e.Requester.RequestParts(ctx, msg, e.maxPartBytes())
}

func (e *Execer) maxPartBytes() int64 {
	if e.MaxPartBytes > 0 {
		return e.MaxPartBytes
	}
	return planner.DefaultMaxResultBytes
}

// MergeParts adds the results of a response's parts (see
// Requester.RequestParts) to its own. A result sent twice, or a part that
// does not read, is the sender's fault: INTERNAL, naming it as from does.
func MergeParts(from string, resp *schema.Response, parts []*nats.Msg) error {
	if len(parts) > 0 && resp.Results == nil {
		resp.Results = map[string]any{}
	}
	for _, pm := range parts {
		part, err := ReadReply(pm, schema.ReadResponse)
		if err != nil {
			return schema.Wrap(schema.CodeInternal, err, "%s sent a bad part of an rpc response", from)
		}
		for name, v := range part.Results {
			if _, dup := resp.Results[name]; dup {
				return schema.Errorf(schema.CodeInternal, "%s sent the result %s twice", from, schema.Clip(name))
			}
			resp.Results[name] = v
		}
	}
	return nil
}

// unplanned reports whether an rpc response's error says that nothing of
// the request ran: refused unread, or before it was planned.
func unplanned(e *schema.Error) bool {
	if e == nil || e.Step != "" {
		return false
	}
	switch e.Code {
	case schema.CodeOverloaded:
		d, _ := e.Details.(map[string]any)
		unread, _ := d["unread"].(bool)
		return unread
	case schema.CodePayloadTooLarge:
		d, _ := e.Details.(map[string]any)
		return d["limit"] == "max_decoded_bytes" // the body, before anything ran
	case schema.CodeInvalidRequest, schema.CodePermissionDenied, schema.CodeUnsupportedCodec:
		return true
	}
	return false
}

// CancelRequest asks the cluster to stop the rpc request id: it publishes
// a cancel on P.<cluster>.cancel (docs/PROTOCOL.md §9), where the node that
// plans the request stops it. It does not wait for the server.
func CancelRequest(nc *nats.Conn, subj bus.Subjects, id string) error {
	m, err := CancelMsg(subj, id)
	if err != nil {
		return err
	}
	return nc.PublishMsg(m)
}

// CancelMsg is the cancel of request id on P.<cluster>.cancel (§9), in
// JSON; set its Reply to have the nodes that stop the request answer.
func CancelMsg(subj bus.Subjects, id string) (*nats.Msg, error) {
	data, err := codec.JSON.Encode(&schema.CancelRequest{ID: id})
	if err != nil {
		return nil, err
	}
	return bus.NewMsg(subj.CancelRequest(), data, codec.JSONType, ""), nil
}

// cancelRequest is CancelRequest for a delegated request, logged when it
// cannot be sent.
func (e *Execer) cancelRequest(id string) {
	if err := CancelRequest(e.Conn, e.Subjects, id); err != nil && e.Logger != nil {
		e.Logger.Debug("cancel not sent", "request_id", id, "error", err)
	}
}

var _ planner.Delegator = (*Execer)(nil)
