package schema

// The wire structs give their own value trees: Tree is what both codecs
// encode (package codec calls it), so that JSON and MessagePack carry the
// same keys from one source. Each Tree follows the struct's json tags
// exactly, omitempty included; codec's TestWireTrees fills every field of
// every wire struct and compares Tree with encoding/json, so a field added
// here without its key fails there. Values may be left outside the value
// model ([]string, map[string]int64): the codecs normalize them.

// Tree returns the command's keys.
func (c Command) Tree() map[string]any {
	m := map[string]any{"name": c.Name, "fun": c.Fun}
	if len(c.Args) > 0 {
		m["args"] = c.Args
	}
	if len(c.Kwargs) > 0 {
		m["kwargs"] = c.Kwargs
	}
	if len(c.Locs) > 0 {
		m["locs"] = c.Locs
	}
	return m
}

// Tree returns the request's keys.
func (r Request) Tree() map[string]any {
	var cmds []any
	if r.Cmds != nil {
		cmds = make([]any, len(r.Cmds))
		for i, c := range r.Cmds {
			cmds[i] = c.Tree()
		}
	}
	m := map[string]any{"cmds": cmds}
	putString(m, "id", r.ID)
	putInt(m, "timeout_ms", r.TimeoutMS)
	putInt(m, "deadline_ms", r.DeadlineMS)
	putString(m, "results", r.Results)
	return m
}

// Tree returns the response's keys.
func (r Response) Tree() map[string]any {
	m := map[string]any{"id": r.ID, "results": r.Results}
	if r.Error != nil {
		m["error"] = r.Error.Tree()
	}
	return m
}

// Tree returns the exec request's keys.
func (r ExecRequest) Tree() map[string]any {
	m := map[string]any{"cluster": r.Cluster, "id": r.ID, "fun": r.Fun, "args": r.Args, "kwargs": r.Kwargs}
	putInt(m, "deadline_ms", r.DeadlineMS)
	putString(m, "attempt", r.Attempt)
	return m
}

// Tree returns the cancel's keys.
func (c Cancel) Tree() map[string]any {
	m := map[string]any{"cluster": c.Cluster, "id": c.ID}
	putString(m, "attempt", c.Attempt)
	return m
}

// Tree returns the cancel request's keys.
func (c CancelRequest) Tree() map[string]any { return map[string]any{"id": c.ID} }

// Tree returns the planner ack's keys.
func (a PlannerAck) Tree() map[string]any {
	m := map[string]any{"cluster": a.Cluster, "id": a.ID, "planner": a.Planner, "incarnation": a.Incarnation}
	putString(m, "instance", a.Instance)
	return m
}

// Tree returns {"result": ...} or {"error": ...}.
func (r ExecReply) Tree() map[string]any {
	if r.Error != nil {
		return ExecError{Error: r.Error}.Tree()
	}
	return ExecResult{Result: r.Result}.Tree()
}

// Tree returns {"result": ...}.
func (r ExecResult) Tree() map[string]any { return map[string]any{"result": r.Result} }

// Tree returns {"error": ...}.
func (r ExecError) Tree() map[string]any {
	var e any
	if r.Error != nil {
		e = r.Error.Tree()
	}
	return map[string]any{"error": e}
}

// Tree returns the error's keys; nil for a nil error.
func (e *Error) Tree() map[string]any {
	if e == nil {
		return nil
	}
	m := map[string]any{"code": string(e.Code), "message": e.Message}
	putString(m, "step", e.Step)
	putString(m, "node", e.Node)
	if e.Details != nil {
		m["details"] = e.Details
	}
	return m
}

// Tree returns the hello's keys.
func (h Hello) Tree() map[string]any {
	m := map[string]any{
		"cluster": h.Cluster, "node": h.Node, "incarnation": h.Incarnation, "version": h.Version,
		"funs": h.Funs, "codecs": h.Codecs, "advertised_urls": h.AdvertisedURLs, "proto": int64(h.Proto),
	}
	putString(m, "kind", h.Kind)
	putString(m, "instance", h.Instance)
	if len(h.Meta) > 0 {
		m["meta"] = h.Meta
	}
	if len(h.Idempotent) > 0 {
		m["idempotent"] = h.Idempotent
	}
	if len(h.RetryAfterMS) > 0 {
		m["retry_after_ms"] = h.RetryAfterMS
	}
	return m
}

// Tree returns the load's keys.
func (l Load) Tree() map[string]any {
	return map[string]any{"inflight": l.Inflight, "limit": l.Limit}
}

// Tree returns the heartbeat's keys.
func (h Heartbeat) Tree() map[string]any {
	m := map[string]any{
		"cluster": h.Cluster, "node": h.Node, "incarnation": h.Incarnation,
		"version": h.Version, "seq": h.Seq, "load": h.Load.Tree(),
	}
	putString(m, "instance", h.Instance)
	return m
}

// Tree returns the goodbye's keys.
func (g Goodbye) Tree() map[string]any {
	m := map[string]any{"cluster": g.Cluster, "node": g.Node, "incarnation": g.Incarnation}
	putString(m, "kind", g.Kind)
	putString(m, "instance", g.Instance)
	return m
}

// putString sets a key tagged omitempty.
func putString(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// putInt sets a key tagged omitempty.
func putInt(m map[string]any, k string, v int64) {
	if v != 0 {
		m[k] = v
	}
}
