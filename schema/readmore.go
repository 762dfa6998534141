package schema

// readTop reads a wire struct T that is a whole body.
func readTop[T any](r Reader, what string, fields []field[T]) (*T, error) {
	x := new(T)
	_, err := readStruct(r, x, what, "", fields)
	if e := r.Err(); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	return x, nil
}

// idF reads a required id (cluster, node, planner) into dst.
func idF[T any](dst func(*T) *string) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) (e *Error) {
		*dst(x), e = readID(r, a.key)
		return e
	}
}

// strF reads a string of at most maxBytes into dst.
func strF[T any](dst func(*T) *string, required bool, maxBytes int) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) (e *Error) {
		*dst(x), e = readBoundedStr(r, a.key, required, maxBytes)
		return e
	}
}

// intF reads an integer into dst, within lo to hi when hi > lo; a null
// of a required one is missing.
func intF[T any](dst func(*T) *int64, required bool, lo, hi int64, what string) func(Reader, *T, at) *Error {
	read := readInt
	if required {
		read = readReqInt
	}
	return func(r Reader, x *T, a at) *Error {
		n, e := read(r, a)
		*dst(x) = n
		if e == nil && hi > lo && (n < lo || n > hi) {
			e = invalid(a.String(), "must be %s, got %d", what, n)
		}
		return e
	}
}

// readReqInt reads a required integer: null is missing.
func readReqInt(r Reader, a at) (int64, *Error) {
	if r.Next() == KindNull {
		r.Skip()
		return 0, missing(a.String())
	}
	return readInt(r, a)
}

// incarnationF and versionF read a hello's, heartbeat's or goodbye's
// incarnation (positive) and version (not negative), both below 2^53.
func incarnationF[T any](dst func(*T) *int64) func(Reader, *T, at) *Error {
	return intF(dst, true, 1, MaxProtoInt, "1 to 2^53-1")
}

func versionF[T any](dst func(*T) *int64) func(Reader, *T, at) *Error {
	return intF(dst, true, 0, MaxProtoInt, "0 to 2^53-1")
}

// kindF reads an optional kind, which must be want when present.
func kindF[T any](dst func(*T) *string, want string) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) *Error {
		k, e := readStr(r, a, false)
		*dst(x) = k
		if e == nil && k != "" && k != want {
			e = invalid("kind", "want %q, got %s", want, Clip(k))
		}
		return e
	}
}

// ReadHeartbeat reads a heartbeat (docs/PROTOCOL.md §7) from r.
func ReadHeartbeat(r Reader) (*Heartbeat, error) { return readTop(r, "heartbeat", heartbeatFields) }

var heartbeatFields = []field[Heartbeat]{
	{key: "cluster", required: true, read: idF(func(h *Heartbeat) *string { return &h.Cluster })},
	{key: "node", required: true, read: idF(func(h *Heartbeat) *string { return &h.Node })},
	{key: "incarnation", required: true, read: incarnationF(func(h *Heartbeat) *int64 { return &h.Incarnation })},
	{key: "version", required: true, read: versionF(func(h *Heartbeat) *int64 { return &h.Version })},
	{key: "instance", read: strF(func(h *Heartbeat) *string { return &h.Instance }, false, MaxInstanceLen)},
	{key: "seq", read: intF(func(h *Heartbeat) *int64 { return &h.Seq }, false, 0, 0, "")},
	{key: "load", read: func(r Reader, h *Heartbeat, a at) *Error {
		h.Load = Load{}
		if r.Next() == KindNull {
			r.Skip()
			return nil
		}
		_, e := readStruct(r, &h.Load, a.key, a.key, loadFields)
		return e
	}},
}

var loadFields = []field[Load]{
	{key: "inflight", read: intF(func(l *Load) *int64 { return &l.Inflight }, false, 0, 0, "")},
	{key: "limit", read: intF(func(l *Load) *int64 { return &l.Limit }, false, 0, 0, "")},
}

// ReadGoodbye reads a goodbye (docs/PROTOCOL.md §7) from r.
func ReadGoodbye(r Reader) (*Goodbye, error) { return readTop(r, "goodbye", goodbyeFields) }

var goodbyeFields = []field[Goodbye]{
	{key: "kind", read: kindF(func(g *Goodbye) *string { return &g.Kind }, KindGoodbye)},
	{key: "cluster", required: true, read: idF(func(g *Goodbye) *string { return &g.Cluster })},
	{key: "node", required: true, read: idF(func(g *Goodbye) *string { return &g.Node })},
	{key: "incarnation", required: true, read: incarnationF(func(g *Goodbye) *int64 { return &g.Incarnation })},
	{key: "instance", read: strF(func(g *Goodbye) *string { return &g.Instance }, false, MaxInstanceLen)},
}

// ReadPlanned reads a stream's planned event from r.
func ReadPlanned(r Reader) (*Planned, error) { return readTop(r, "planned", plannedFields) }

var plannedFields = []field[Planned]{
	{key: "id", read: strF(func(p *Planned) *string { return &p.ID }, false, MaxRequestIDLen)},
	{key: "planner", required: true, read: idF(func(p *Planned) *string { return &p.Planner })},
	{key: "incarnation", read: intF(func(p *Planned) *int64 { return &p.Incarnation }, false, 0, 0, "")},
	{key: "instance", read: strF(func(p *Planned) *string { return &p.Instance }, false, MaxInstanceLen)},
	{key: "steps", read: intF(func(p *Planned) *int64 { return &p.Steps }, false, 0, 0, "")},
}

// ReadCancel reads a cancel (see Cancel) from r.
func ReadCancel(r Reader) (*Cancel, error) { return readTop(r, "cancel", cancelFields) }

var cancelFields = []field[Cancel]{
	{key: "cluster", required: true, read: idF(func(c *Cancel) *string { return &c.Cluster })},
	{key: "id", required: true, read: strF(func(c *Cancel) *string { return &c.ID }, true, MaxExecIDLen)},
	{key: "attempt", read: strF(func(c *Cancel) *string { return &c.Attempt }, false, MaxAttemptLen)},
}

// ReadCancelRequest reads a CancelRequest from r.
func ReadCancelRequest(r Reader) (*CancelRequest, error) {
	return readTop(r, "cancel", cancelRequestFields)
}

var cancelRequestFields = []field[CancelRequest]{
	{key: "id", required: true, read: func(r Reader, c *CancelRequest, a at) (e *Error) {
		if c.ID, e = readBoundedStr(r, a.key, true, MaxRequestIDLen); e == nil && c.ID == "" {
			e = invalid("id", "must not be empty")
		}
		return e
	}},
}

// ReadCancelAnswer reads a node's answer to a cancel from r.
func ReadCancelAnswer(r Reader) (*CancelAnswer, error) {
	return readTop(r, "cancel answer", cancelAnswerFields)
}

var cancelAnswerFields = []field[CancelAnswer]{
	{key: "id", required: true, read: strF(func(c *CancelAnswer) *string { return &c.ID }, true, MaxRequestIDLen)},
	{key: "node", required: true, read: idF(func(c *CancelAnswer) *string { return &c.Node })},
}

// ReadPlannerAck reads a PlannerAck from r.
func ReadPlannerAck(r Reader) (*PlannerAck, error) {
	return readTop(r, "planner ack", plannerAckFields)
}

var plannerAckFields = []field[PlannerAck]{
	{key: "cluster", required: true, read: idF(func(p *PlannerAck) *string { return &p.Cluster })},
	{key: "id", read: strF(func(p *PlannerAck) *string { return &p.ID }, false, MaxRequestIDLen)},
	{key: "planner", required: true, read: idF(func(p *PlannerAck) *string { return &p.Planner })},
	{key: "incarnation", required: true, read: intF(func(p *PlannerAck) *int64 { return &p.Incarnation }, true, 0, 0, "")},
	{key: "instance", read: strF(func(p *PlannerAck) *string { return &p.Instance }, false, MaxInstanceLen)},
}
