package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// NewPeerWindow is how long after a node was first heard "no responders"
// from it is retried briefly: interest spreads through a NATS cluster
// asynchronously, so a new node's exec subscription may not have reached
// every server yet.
const NewPeerWindow = 3 * time.Second

// Execer sends steps to other nodes' exec subjects. It implements
// planner.Executor for remote nodes.
type Execer struct {
	Conn     *nats.Conn
	Subjects bus.Subjects
	Cluster  string
	Table    *membership.Table
	Logger   *slog.Logger
	// Requester, when set, carries the requests and their replies (else
	// Conn's own request/reply, which drops replies past 64 MB buffered).
	Requester *Requester
	// Flow, when set, bounds the bytes of steps in flight.
	Flow *Flow
	// MaxPartBytes bounds the parts of a delegated response sent in
	// several messages (see Delegate). Default
	// planner.DefaultMaxResultBytes.
	MaxPartBytes int64

	attemptOnce   sync.Once
	attemptPrefix string
	attemptSeq    atomic.Uint64
	// noRPC holds, per node, until when it is taken not to plan requests
	// (its own rpc subject had no responders: a node that only runs
	// steps), so that steps pinned there are not offered to it again.
	noRPC sync.Map // node id → time.Time
	// execSubjects holds the nodes' exec subjects, each made once (at
	// most maxExecSubjects, then made anew).
	execSubjects  sync.Map // node id → string
	execSubjectsN atomic.Int64
}

// maxExecSubjects bounds Execer.execSubjects, which nodes that come and go
// would otherwise grow.
const maxExecSubjects = 4096

// execSubject is node's exec subject.
func (e *Execer) execSubject(node string) string {
	if s, ok := e.execSubjects.Load(node); ok {
		return s.(string)
	}
	s := e.Subjects.Exec(node)
	if e.execSubjectsN.Add(1) > maxExecSubjects {
		e.execSubjects.Clear()
		e.execSubjectsN.Store(1)
	}
	e.execSubjects.Store(node, s)
	return s
}

// nextAttempt returns a token unique to one sending of one step.
func (e *Execer) nextAttempt() string {
	e.attemptOnce.Do(func() { e.attemptPrefix = nuid.Next() + "." })
	var buf [48]byte // the prefix and the number, one allocation in all
	return string(strconv.AppendUint(append(buf[:0], e.attemptPrefix...), e.attemptSeq.Add(1), 36))
}

var _ planner.Executor = (*Execer)(nil)

// Exec sends c to node and waits for its reply until ctx is done. What it
// saw of an attempt that failed is a *planner.AttemptError (no responders,
// lost before or while running, the attempt's deadline) for
// planner.Retryable to decide on; a reply's error object comes back as
// *schema.Error.
func (e *Execer) Exec(ctx context.Context, node string, c *planner.Call) (planner.Result, error) {
	if e.Conn.Status() != nats.CONNECTED {
		return planner.Result{}, &planner.AttemptError{Fact: planner.NotSent,
			Err: schema.Errorf(schema.CodeNodeUnavailable, "not connected to NATS (%s)", e.Conn.Status())}
	}
	// What the node offers, also when it said goodbye meanwhile: a step
	// routed to it just before must still know whether it may run twice.
	hello, firstSeen, _ := e.Table.Hello(node)
	a := attempt{node: node, call: c, idempotent: idempotent(hello, c.Fun), parent: ctx}
	// An idempotent function with a retry-after gets an attempt deadline:
	// past it the planner tries another node rather than wait for the whole
	// budget (a lost message, a stalled node).
	if ms := hello.RetryAfterMS[c.Fun]; ms > 0 && a.idempotent {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
		a.retryAfter = true
	}
	msg, err := e.message(ctx, node, c, hello, &a)
	if err != nil {
		return planner.Result{}, err
	}
	if e.Flow != nil {
		n, err := e.Flow.Reserve(ctx, c.Fun, len(msg.Data), e.Conn.MaxPayload())
		if err != nil {
			return planner.Result{}, err
		}
		defer e.Flow.Release(n)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer e.Table.Track(node, cancel)()
	resp, err := e.send(ctx, &msg, firstSeen)
	if err != nil {
		return planner.Result{}, e.failed(ctx, err, &a)
	}
	if e.Flow != nil {
		e.Flow.Observe(c.Fun, len(resp.Data))
	}
	return e.reply(resp, &a)
}

// attempt is one sending of a step, as Exec sees it.
type attempt struct {
	node       string
	call       *planner.Call
	id         string // the attempt token of the exec request
	idempotent bool   // the node lists the function as idempotent
	retryAfter bool   // the attempt has a deadline of its own
	parent     context.Context
}

// noKwargs is the kwargs of an exec request for a call without any. It is
// only ever encoded.
var noKwargs = map[string]any{}

// message builds the exec request for c in the codec the node reads best
// (see peerMsg), checked against the max payload.
func (e *Execer) message(ctx context.Context, node string, c *planner.Call, hello schema.Hello, a *attempt) (nats.Msg, error) {
	cd := codec.Preferred(hello.Codecs)
	a.id = e.nextAttempt()
	body := schema.ExecRequest{Cluster: e.Cluster, ID: c.ID(), Fun: c.Fun, Args: c.Args, Kwargs: c.Kwargs, Attempt: a.id,
		Timing: c.Traced()}
	if body.Args == nil {
		body.Args = []any{}
	}
	if body.Kwargs == nil {
		body.Kwargs = noKwargs
	}
	if dl, ok := ctx.Deadline(); ok {
		_, body.DeadlineMS = schema.Budget(time.Now(), dl)
	}
	// The arguments are what can be large: bound them before encoding.
	limit := int(e.Conn.MaxPayload())
	size, ok := codec.SizeWithinList(body.Args, limit)
	if ok {
		var n int
		n, ok = codec.SizeWithinMap(body.Kwargs, limit-size)
		size += n
	}
	if !ok {
		return nats.Msg{}, TooLarge("exec request for "+c.Fun, size, e.Conn.MaxPayload())
	}
	data, err := cd.Encode(&body)
	if err != nil {
		return nats.Msg{}, schema.Wrap(schema.CodeInvalidArgument, err, "arguments do not encode")
	}
	msg := peerMsg(e.execSubject(node), data, cd, hello)
	if !bus.Fits(e.Conn, &msg) {
		return nats.Msg{}, TooLarge("exec request for "+c.Fun, len(data), e.Conn.MaxPayload())
	}
	return msg, nil
}

// peerMsg is a message of data, encoded in cd, to a node's exec or node
// rpc subject: without header when it is MessagePack and the node's hello
// says it reads MessagePack without one (hello.bare, docs/PROTOCOL.md
// §6.2), so that neither side builds or parses a header; else with
// Content-Type.
func peerMsg(subject string, data []byte, cd codec.Codec, hello schema.Hello) nats.Msg {
	if cd == codec.MsgPack && hello.Bare == codec.MsgPackType {
		return nats.Msg{Subject: subject, Data: data}
	}
	return *bus.NewMsg(subject, data, cd.ContentType(), "")
}

// send sends msg and waits for the reply. "No responders" from a node
// first heard less than NewPeerWindow ago is tried again, up to 20 times
// 1 ms apart: its subscription may not have reached every server yet.
func (e *Execer) send(ctx context.Context, msg *nats.Msg, firstSeen time.Time) (*nats.Msg, error) {
	resp, err := e.request(ctx, msg)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < 20 && time.Since(firstSeen) < NewPeerWindow; try++ {
		select {
		case <-ctx.Done():
			return nil, errNoResponderYet
		case <-time.After(time.Millisecond):
		}
		resp, err = e.request(ctx, msg)
	}
	return resp, err
}

// errNoResponderYet ends send when ctx ended while the node had not yet
// answered a single try: the step did not run there.
var errNoResponderYet = errors.New("mesh: the node had no responder yet")

// failed turns an attempt that got no reply into the error Exec returns,
// stating what was seen.
func (e *Execer) failed(ctx context.Context, err error, a *attempt) error {
	node, c := a.node, a.call
	lost := errors.Is(context.Cause(ctx), membership.ErrNodeLost)
	switch {
	case errors.Is(err, errNoResponderYet) && lost:
		return &planner.AttemptError{Fact: planner.LostBeforeRun, Err: &schema.Error{Code: schema.CodeNodeUnavailable, Node: node,
			Message: fmt.Sprintf("node %s was lost before it took the step", node)}}
	case errors.Is(err, errNoResponderYet):
		return ctx.Err()
	case errors.Is(err, nats.ErrNoResponders):
		e.Table.MarkDead(node)
		if e.Logger != nil {
			e.Logger.Info("node has no exec responder; marked dead", "peer", node, "request_id", c.RequestID, "step", c.Step)
		}
		return &planner.AttemptError{Fact: planner.NoResponders,
			Err: schema.Errorf(schema.CodeNodeUnavailable, "node %s does not answer on its exec subject", node)}
	case lost:
		return &planner.AttemptError{Fact: planner.LostWhileRunning, Idempotent: a.idempotent,
			Err: &schema.Error{Code: schema.CodeNodeUnavailable, Node: node,
				Message: fmt.Sprintf("node %s was lost while running the step", node)}}
	case errors.Is(err, context.Canceled):
		// The request failed elsewhere or the caller went away: tell the
		// node to cancel the step's context (it would otherwise run on
		// until its deadline).
		e.sendCancel(node, c.ID(), a.id)
		return err
	case errors.Is(err, context.DeadlineExceeded) && a.retryAfter && a.parent.Err() == nil:
		// Only the attempt's retry-after passed.
		return &planner.AttemptError{Fact: planner.AttemptDeadline, Idempotent: true,
			Err: &schema.Error{Code: schema.CodeTimeout, Node: node,
				Message: fmt.Sprintf("node %s did not answer within the retry-after of %s", node, c.Fun)}}
	case errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, nats.ErrTimeout):
		return context.DeadlineExceeded
	case errors.Is(err, nats.ErrPermissionViolation):
		return PermissionDenied(err, "send steps to node "+node)
	}
	return schema.Wrap(schema.CodeNodeUnavailable, err, "exec on node %s", node)
}

// reply reads an exec reply: the result, with the timing the node sent,
// or the error object with what it says of the attempt.
func (e *Execer) reply(resp *nats.Msg, a *attempt) (planner.Result, error) {
	rep, err := ReadReply(resp, schema.ReadExecReply)
	if err != nil {
		return planner.Result{}, BadReply(err, "node %s sent a bad exec reply", a.node)
	}
	var res planner.Result
	if rep.Timing != nil {
		res.Timing = planner.Timing{Queue: time.Duration(rep.Timing.QueueUS) * time.Microsecond,
			Run: time.Duration(rep.Timing.RunUS) * time.Microsecond, Fetched: rep.Timing.FetchedBytes}
	}
	if rep.Error == nil {
		res.Value = rep.Result
		return res, nil
	}
	switch {
	case rep.Error.Code == schema.CodeTimeout && a.retryAfter && a.parent.Err() == nil:
		// The node gave up at the attempt deadline.
		return res, &planner.AttemptError{Fact: planner.AttemptDeadline, Idempotent: true, Err: rep.Error}
	case rep.Error.Code == schema.CodeNodeUnavailable:
		// The node stopped while running the step (§6.1).
		return res, &planner.AttemptError{Fact: planner.StoppedWhileRunning, Idempotent: a.idempotent, Err: rep.Error}
	}
	return res, rep.Error
}

// request sends msg and waits for its reply. msg is not kept.
func (e *Execer) request(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	if e.Requester != nil {
		return e.Requester.Request(ctx, msg)
	}
	out := *msg
	return e.Conn.RequestMsgWithContext(ctx, &out)
}

func idempotent(h schema.Hello, fun string) bool {
	for _, f := range h.Idempotent {
		if f == fun {
			return true
		}
	}
	return false
}

// sendCancel publishes a cancel for exec id to node (docs/PROTOCOL.md
// §6.3). Nodes that do not know it have no subscriber, and the step runs
// until its deadline.
func (e *Execer) sendCancel(node, id, attempt string) {
	data, err := codec.JSON.Encode(&schema.Cancel{Cluster: e.Cluster, ID: id, Attempt: attempt})
	if err == nil {
		err = e.Conn.PublishMsg(bus.NewMsg(e.Subjects.Cancel(node), data, codec.JSONType, ""))
	}
	if err != nil && e.Logger != nil {
		e.Logger.Debug("cancel not sent", "peer", node, "id", id, "error", err)
	}
}
