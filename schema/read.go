package schema

import (
	"fmt"
	"slices"
)

// ReadRequest reads an RPC request (docs/PROTOCOL.md §4) from r. It checks
// types and names; the planner checks references, duplicates and cycles.
// When the request does not parse, the *Request returned with the error
// holds only the id the body gave (a string), for the error reply to echo.
func ReadRequest(r Reader) (*Request, error) {
	q := &Request{}
	_, err := readStruct(r, q, "request", "", requestFields)
	if e := r.Err(); e != nil {
		return nil, e
	}
	if err != nil {
		return &Request{ID: q.ID}, err
	}
	if q.Submit && !q.Durable {
		return &Request{ID: q.ID}, invalid("submit", "submit needs durable: only a durable request can be fetched later")
	}
	if q.Results == "" {
		q.Results = ResultsSinks
	}
	return q, nil
}

var requestFields = []field[Request]{
	{key: "id", read: func(r Reader, q *Request, a at) (e *Error) {
		q.ID, e = readBoundedStr(r, a.key, false, MaxRequestIDLen)
		return e
	}},
	{key: "timeout_ms", read: func(r Reader, q *Request, a at) (e *Error) {
		if q.TimeoutMS, e = readInt(r, a); e == nil && q.TimeoutMS < 0 {
			e = invalid("timeout_ms", "must not be negative") // a larger one is capped
		}
		return e
	}},
	{key: "deadline_ms", read: func(r Reader, q *Request, a at) (e *Error) {
		q.DeadlineMS, e = readDeadline(r, a)
		return e
	}},
	{key: "results", read: func(r Reader, q *Request, a at) (e *Error) {
		if q.Results, e = readStr(r, a, false); e == nil && q.Results != "" && q.Results != ResultsSinks && q.Results != ResultsAll {
			e = invalid("results", "want %q or %q, got %s", ResultsSinks, ResultsAll, Clip(q.Results))
		}
		return e
	}},
	{key: "on_error", read: func(r Reader, q *Request, a at) (e *Error) {
		if q.OnError, e = readStr(r, a, false); e == nil && q.OnError != "" && q.OnError != OnErrorStop && q.OnError != OnErrorContinue {
			e = invalid("on_error", "want %q or %q, got %s", OnErrorStop, OnErrorContinue, Clip(q.OnError))
		}
		return e
	}},
	{key: "route_wait_ms", read: func(r Reader, q *Request, a at) (e *Error) {
		if q.RouteWaitMS, e = readInt(r, a); e == nil && (q.RouteWaitMS < 0 || q.RouteWaitMS > MaxProtoInt) {
			e = invalid("route_wait_ms", "must be 0 to 2^53-1 (the request's budget bounds it)")
		}
		return e
	}},
	{key: "dry_run", read: boolField(func(q *Request) *bool { return &q.DryRun })},
	{key: "trace", read: boolField(func(q *Request) *bool { return &q.Trace })},
	{key: "stream", read: boolField(func(q *Request) *bool { return &q.Stream })},
	{key: "progress", read: boolField(func(q *Request) *bool { return &q.Progress })},
	{key: "split_results", read: boolField(func(q *Request) *bool { return &q.SplitResults })},
	{key: "durable", read: boolField(func(q *Request) *bool { return &q.Durable })},
	{key: "submit", read: boolField(func(q *Request) *bool { return &q.Submit })},
	{key: "result_ttl_ms", read: func(r Reader, q *Request, a at) (e *Error) {
		if q.ResultTTLMS, e = readInt(r, a); e == nil && (q.ResultTTLMS < 0 || q.ResultTTLMS > MaxProtoInt) {
			e = invalid("result_ttl_ms", "must be 0 to 2^53-1 (capped at the node's maximum)")
		}
		return e
	}},
	{key: "cmds", required: true, read: func(r Reader, q *Request, _ at) (e *Error) {
		q.Cmds, e = readCmds(r)
		return e
	}},
}

// readCmds reads a request's commands: a list of at least one.
func readCmds(r Reader) ([]Command, *Error) {
	switch k := r.Next(); k {
	case KindList:
	case KindNull:
		r.Skip()
		return nil, missing("cmds")
	default:
		r.Skip()
		return nil, kindErr("cmds", "list", k)
	}
	cmds := make([]Command, 0, capHint(r.List()))
	var err *Error
	for r.More() {
		i := len(cmds)
		cmds = append(cmds, Command{})
		key := cmdKey(i)
		if _, e := readStruct(r, &cmds[i], key, key, commandFields); e != nil && err == nil {
			err = e
		}
	}
	if err == nil && len(cmds) == 0 {
		err = invalid("cmds", "must hold at least one command")
	}
	return cmds, err
}

var commandFields = []field[Command]{
	{key: "name", required: true, read: func(r Reader, c *Command, a at) (e *Error) {
		if c.Name, e = readStr(r, a, true); e == nil && c.Name == "" {
			e = invalid(a.String(), "must not be empty")
		}
		return e
	}},
	{key: "fun", required: true, read: func(r Reader, c *Command, a at) (e *Error) {
		if c.Fun, e = readStr(r, a, true); e == nil {
			if err := checkFunName(c.Fun); err != nil {
				e = invalid(a.String(), "%s", err.Message)
			}
		}
		return e
	}},
	{key: "args", read: func(r Reader, c *Command, a at) (e *Error) {
		c.Args, e = readList(r, a)
		return e
	}},
	{key: "kwargs", read: func(r Reader, c *Command, a at) (e *Error) {
		c.Kwargs, e = readMap(r, a)
		return e
	}},
	{key: "locs", read: func(r Reader, c *Command, a at) (e *Error) {
		if c.Locs, e = readStrList(r, a); e != nil {
			return e
		}
		for i, l := range c.Locs {
			if err := checkLoc(l); err != nil {
				return invalid(fmt.Sprintf("%s[%d]", a, i), "%s", err.Message)
			}
		}
		return nil
	}},
}

// ReadExecRequest reads an exec request (docs/PROTOCOL.md §6) from r.
func ReadExecRequest(r Reader) (*ExecRequest, error) {
	return readTop(r, "exec", execFields)
}

var execFields = []field[ExecRequest]{
	{key: "cluster", required: true, read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.Cluster, e = readID(r, a.key)
		return e
	}},
	{key: "id", read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.ID, e = readBoundedStr(r, a.key, false, MaxExecIDLen)
		return e
	}},
	{key: "fun", required: true, read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		if x.Fun, e = readStr(r, a, true); e == nil {
			if err := checkFunName(x.Fun); err != nil {
				e = invalid("fun", "%s", err.Message)
			}
		}
		return e
	}},
	{key: "args", read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.Args, e = readList(r, a)
		return e
	}},
	{key: "kwargs", read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.Kwargs, e = readMap(r, a)
		return e
	}},
	{key: "deadline_ms", read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.DeadlineMS, e = readDeadline(r, a)
		return e
	}},
	{key: "attempt", read: func(r Reader, x *ExecRequest, a at) (e *Error) {
		x.Attempt, e = readBoundedStr(r, a.key, false, MaxAttemptLen)
		return e
	}},
	{key: "timing", read: boolField(func(x *ExecRequest) *bool { return &x.Timing })},
}

// ReadExecReply reads an exec reply (docs/PROTOCOL.md §6) from r.
func ReadExecReply(r Reader) (*ExecReply, error) {
	x := &execReply{}
	seen, err := readStruct(r, x, "reply", "", execReplyFields)
	if e := r.Err(); e != nil {
		return nil, e
	}
	switch {
	case err != nil:
		return nil, err
	case x.Error != nil:
		return &ExecReply{Error: x.Error, Timing: x.Timing}, nil
	case seen&(1<<2) == 0:
		return nil, missing("result")
	}
	return &ExecReply{Result: x.Result, Timing: x.Timing}, nil
}

// execReply is an ExecReply as read, before the error decides which of
// result and error it is.
type execReply ExecReply

var execReplyFields = []field[execReply]{
	{key: "timing", read: func(r Reader, x *execReply, _ at) (e *Error) {
		x.Timing, e = readTiming(r)
		return e
	}},
	{key: "error", read: func(r Reader, x *execReply, a at) (e *Error) {
		x.Error, e = readOptError(r, a.key)
		return e
	}},
	{key: "result", read: func(r Reader, x *execReply, _ at) *Error {
		x.Result = r.Value()
		return nil
	}},
}

// readTiming reads an exec reply's optional timing.
func readTiming(r Reader) (*StepTiming, *Error) {
	if r.Next() == KindNull {
		r.Skip()
		return nil, nil
	}
	t := &StepTiming{}
	_, err := readStruct(r, t, "timing", "timing", timingFields)
	return t, err
}

var timingFields = []field[StepTiming]{
	{key: "queue_us", read: func(r Reader, t *StepTiming, a at) (e *Error) {
		t.QueueUS, e = readInt(r, a)
		return e
	}},
	{key: "run_us", read: func(r Reader, t *StepTiming, a at) (e *Error) {
		t.RunUS, e = readInt(r, a)
		return e
	}},
	{key: "fetched_bytes", read: func(r Reader, t *StepTiming, a at) (e *Error) {
		t.FetchedBytes, e = readInt(r, a)
		return e
	}},
}

// readOptError reads an error object, or null.
func readOptError(r Reader, key string) (*Error, *Error) {
	if r.Next() == KindNull {
		r.Skip()
		return nil, nil
	}
	return readError(r, key)
}

// readError reads an error object; key names it in errors.
func readError(r Reader, key string) (*Error, *Error) {
	e := &Error{}
	if _, err := readStruct(r, e, key, key, errorFields); err != nil {
		return nil, err
	}
	if !e.Code.Valid() {
		// A code this side does not know (a newer peer, or a broken one)
		// would reach callers that switch on the list of §5: it is an
		// INTERNAL error, with the peer's code and details kept.
		code := string(e.Code)
		details := map[string]any{"code": code[:cutAt(code, clipLen)]}
		if e.Details != nil {
			details["details"] = e.Details
		}
		e.Code, e.Details = CodeInternal, details
		e.Message = "unknown error code " + Clip(code) + ": " + e.Message
	}
	return e, nil
}

var errorFields = []field[Error]{
	{key: "code", required: true, read: func(r Reader, x *Error, a at) *Error {
		s, e := readStr(r, a, true)
		x.Code = Code(s)
		return e
	}},
	{key: "message", read: func(r Reader, x *Error, a at) (e *Error) {
		x.Message, e = readStr(r, a, false)
		return e
	}},
	{key: "step", read: func(r Reader, x *Error, a at) (e *Error) {
		x.Step, e = readStr(r, a, false)
		return e
	}},
	{key: "node", read: func(r Reader, x *Error, a at) (e *Error) {
		x.Node, e = readStr(r, a, false)
		return e
	}},
	{key: "details", read: func(r Reader, x *Error, _ at) *Error {
		x.Details = r.Value()
		return nil
	}},
}

// ReadResponse reads an RPC response (docs/PROTOCOL.md §5) from r.
func ReadResponse(r Reader) (*Response, error) {
	return readTop(r, "response", responseFields)
}

var responseFields = []field[Response]{
	{key: "id", read: func(r Reader, x *Response, a at) (e *Error) {
		x.ID, e = readStr(r, a, false)
		return e
	}},
	{key: "results", read: func(r Reader, x *Response, a at) (e *Error) {
		x.Results, e = readMap(r, a)
		return e
	}},
	{key: "error", read: func(r Reader, x *Response, a at) (e *Error) {
		x.Error, e = readOptError(r, a.key)
		return e
	}},
	{key: "plan", read: readPlan},
	{key: "problems", read: func(r Reader, x *Response, a at) *Error {
		x.Problems = nil
		isList, err := readEach(r, a.key, func(i int) *Error {
			p, e := readError(r, fmt.Sprintf("problems[%d]", i))
			x.Problems = append(x.Problems, p)
			return e
		})
		if isList && x.Problems == nil {
			x.Problems = []*Error{}
		}
		return err
	}},
	{key: "trace", read: readTrace},
	{key: "trace_truncated", read: boolField(func(x *Response) *bool { return &x.TraceTruncated })},
	{key: "warnings", read: readWarnings},
	{key: "errors", read: readErrorMap},
}

// readPlan reads a dry run's plan.
func readPlan(r Reader, x *Response, a at) *Error {
	x.Plan = nil
	isList, err := readEach(r, a.key, func(i int) *Error {
		key := fmt.Sprintf("plan[%d]", i)
		st := planStep{}
		seen, e := readStruct(r, &st, key, key, planStepFields)
		if seen&(1<<6) == 0 { // a node before routable: a pick means routable
			st.Routable = st.Node != nil
		}
		x.Plan = append(x.Plan, PlanStep(st))
		return e
	})
	if isList && x.Plan == nil {
		x.Plan = []PlanStep{}
	}
	return err
}

// planStep is a PlanStep as read.
type planStep PlanStep

var planStepFields = []field[planStep]{
	{key: "name", required: true, read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Name, e = readStr(r, a, true)
		return e
	}},
	{key: "fun", required: true, read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Fun, e = readStr(r, a, true)
		return e
	}},
	{key: "locs", read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Locs, e = readStrList(r, a)
		return e
	}},
	{key: "deps", read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Deps, e = readStrList(r, a)
		return e
	}},
	{key: "candidates", read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Candidates, e = readStrList(r, a)
		return e
	}},
	{key: "node", read: func(r Reader, s *planStep, _ at) *Error {
		s.Node = nil
		if r.Next() != KindString { // anything else: no pick
			r.Skip()
			return nil
		}
		n := r.Str()
		s.Node = &n
		return nil
	}},
	{key: "routable", read: func(r Reader, s *planStep, a at) (e *Error) {
		s.Routable, e = readBool(r, a.key)
		return e
	}},
}

// readTrace reads a response's trace.
func readTrace(r Reader, x *Response, a at) *Error {
	x.Trace = nil
	isList, err := readEach(r, a.key, func(i int) *Error {
		key := fmt.Sprintf("trace[%d]", i)
		var t TraceEntry
		_, e := readStruct(r, &t, key, key, traceFields)
		x.Trace = append(x.Trace, t)
		return e
	})
	if isList && x.Trace == nil {
		x.Trace = []TraceEntry{}
	}
	return err
}

func traceStr(dst func(*TraceEntry) *string) func(Reader, *TraceEntry, at) *Error {
	return func(r Reader, t *TraceEntry, a at) (e *Error) {
		*dst(t), e = readStr(r, a, false)
		return e
	}
}

func traceInt(dst func(*TraceEntry) *int64) func(Reader, *TraceEntry, at) *Error {
	return func(r Reader, t *TraceEntry, a at) (e *Error) {
		*dst(t), e = readInt(r, a)
		return e
	}
}

var traceFields = []field[TraceEntry]{
	{key: "step", read: traceStr(func(t *TraceEntry) *string { return &t.Step })},
	{key: "fun", read: traceStr(func(t *TraceEntry) *string { return &t.Fun })},
	{key: "node", read: traceStr(func(t *TraceEntry) *string { return &t.Node })},
	{key: "code", read: traceStr(func(t *TraceEntry) *string { return &t.Code })},
	{key: "attempt", read: traceInt(func(t *TraceEntry) *int64 { return &t.Attempt })},
	{key: "start_us", read: traceInt(func(t *TraceEntry) *int64 { return &t.StartUS })},
	{key: "queue_us", read: traceInt(func(t *TraceEntry) *int64 { return &t.QueueUS })},
	{key: "run_us", read: traceInt(func(t *TraceEntry) *int64 { return &t.RunUS })},
	{key: "fetched_bytes", read: traceInt(func(t *TraceEntry) *int64 { return &t.FetchedBytes })},
}

// readWarnings reads a dry run's warnings.
func readWarnings(r Reader, x *Response, a at) *Error {
	x.Warnings = nil
	isList, err := readEach(r, a.key, func(i int) *Error {
		key := fmt.Sprintf("warnings[%d]", i)
		var w Warning
		_, e := readStruct(r, &w, key, key, warningFields)
		x.Warnings = append(x.Warnings, w)
		return e
	})
	if isList && x.Warnings == nil {
		x.Warnings = []Warning{}
	}
	return err
}

func warningStr(dst func(*Warning) *string, required bool) func(Reader, *Warning, at) *Error {
	return func(r Reader, w *Warning, a at) (e *Error) {
		*dst(w), e = readStr(r, a, required)
		return e
	}
}

var warningFields = []field[Warning]{
	{key: "step", required: true, read: warningStr(func(w *Warning) *string { return &w.Step }, true)},
	{key: "key", required: true, read: warningStr(func(w *Warning) *string { return &w.Key }, true)},
	{key: "message", required: true, read: warningStr(func(w *Warning) *string { return &w.Message }, true)},
	{key: "near", read: warningStr(func(w *Warning) *string { return &w.Near }, false)},
}

// readErrorMap reads a response's errors by step name. Of several bad
// entries, the one of the smallest name is reported.
func readErrorMap(r Reader, x *Response, a at) *Error {
	x.Errors = nil
	switch k := r.Next(); k {
	case KindMap:
	case KindNull:
		r.Skip()
		return nil
	default:
		r.Skip()
		return kindErr(a.key, "map", k)
	}
	x.Errors = make(map[string]*Error, max(r.Map(), 0))
	var bad map[string]*Error
	for name, ok := r.Key(); ok; name, ok = r.Key() {
		e, err := readError(r, "errors."+Clip(name))
		if err != nil {
			if bad == nil {
				bad = map[string]*Error{}
			}
			bad[name] = err
			delete(x.Errors, name)
			continue
		}
		x.Errors[name] = e
		delete(bad, name)
	}
	if len(bad) == 0 {
		return nil
	}
	names := make([]string, 0, len(bad))
	for n := range bad {
		names = append(names, n)
	}
	return bad[slices.Min(names)]
}
