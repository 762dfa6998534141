package schema

import "reflect"

// FieldWriter receives the keys and values of a wire struct, in order,
// from its WriteFields: the one description of its keys that both codecs
// follow, without building a map. codec's TestWireTrees fills every field
// of every wire struct and compares what WriteFields gives with
// encoding/json, so a field added without its key fails there. Values may
// be outside the value model ([]string, a nested wire struct): the codecs
// normalize them.
type FieldWriter interface {
	Str(key, v string)
	Int(key string, v int64)
	Any(key string, v any)
}

// Wire is a wire struct: the messages of docs/PROTOCOL.md §4–§7.
type Wire interface {
	WriteFields(w FieldWriter)
}

// IsNil reports whether x is a nil pointer, which encodes as null.
func IsNil(x Wire) bool {
	rv := reflect.ValueOf(x)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// Tree returns the fields of x as a map, or nil for a nil pointer.
func Tree(x Wire) map[string]any {
	if IsNil(x) {
		return nil
	}
	m := treeWriter{}
	x.WriteFields(m)
	return m
}

type treeWriter map[string]any

func (t treeWriter) Str(k, v string)       { t[k] = v }
func (t treeWriter) Int(k string, v int64) { t[k] = v }
func (t treeWriter) Any(k string, v any)   { t[k] = v }

// WriteFields writes the command's keys.
func (c Command) WriteFields(w FieldWriter) {
	w.Str("name", c.Name)
	w.Str("fun", c.Fun)
	if len(c.Args) > 0 {
		w.Any("args", c.Args)
	}
	if len(c.Kwargs) > 0 {
		w.Any("kwargs", c.Kwargs)
	}
	if len(c.Locs) > 0 {
		w.Any("locs", c.Locs)
	}
}

// WriteFields writes the request's keys.
func (r Request) WriteFields(w FieldWriter) {
	strOpt(w, "id", r.ID)
	w.Any("cmds", r.Cmds)
	intOpt(w, "timeout_ms", r.TimeoutMS)
	intOpt(w, "deadline_ms", r.DeadlineMS)
	strOpt(w, "results", r.Results)
	strOpt(w, "on_error", r.OnError)
	intOpt(w, "route_wait_ms", r.RouteWaitMS)
	if r.DryRun {
		w.Any("dry_run", true)
	}
	if r.Trace {
		w.Any("trace", true)
	}
	if r.Stream {
		w.Any("stream", true)
	}
	if r.Progress {
		w.Any("progress", true)
	}
	if r.SplitResults {
		w.Any("split_results", true)
	}
	r.Durability.WriteFields(w)
}

// WriteFields writes a request's keys of durability.
func (d Durability) WriteFields(w FieldWriter) {
	if d.Durable {
		w.Any("durable", true)
	}
	if d.Submit {
		w.Any("submit", true)
	}
	intOpt(w, "result_ttl_ms", d.ResultTTLMS)
}

// WriteFields writes the planned event's keys.
func (p Planned) WriteFields(w FieldWriter) {
	w.Str("id", p.ID)
	w.Str("planner", p.Planner)
	w.Int("incarnation", p.Incarnation)
	strOpt(w, "instance", p.Instance)
	w.Int("steps", p.Steps)
}

// WriteFields writes the response's keys.
func (r Response) WriteFields(w FieldWriter) {
	w.Str("id", r.ID)
	w.Any("results", r.Results)
	if r.Error != nil {
		w.Any("error", r.Error)
	}
	if r.Errors != nil {
		w.Any("errors", r.Errors)
	}
	if r.Plan != nil {
		w.Any("plan", r.Plan)
	}
	if r.Problems != nil {
		w.Any("problems", r.Problems)
	}
	if r.Warnings != nil {
		w.Any("warnings", r.Warnings)
	}
	if r.Trace != nil {
		w.Any("trace", r.Trace)
	}
	if r.TraceTruncated {
		w.Any("trace_truncated", true)
	}
}

// WriteFields writes the trace entry's keys.
func (e TraceEntry) WriteFields(w FieldWriter) {
	w.Str("step", e.Step)
	w.Str("fun", e.Fun)
	w.Str("node", e.Node)
	w.Int("attempt", e.Attempt)
	w.Int("start_us", e.StartUS)
	w.Int("queue_us", e.QueueUS)
	w.Int("run_us", e.RunUS)
	intOpt(w, "fetched_bytes", e.FetchedBytes)
	w.Str("code", e.Code)
}

// WriteFields writes the step timing's keys.
func (t StepTiming) WriteFields(w FieldWriter) {
	w.Int("queue_us", t.QueueUS)
	w.Int("run_us", t.RunUS)
	intOpt(w, "fetched_bytes", t.FetchedBytes)
}

// WriteFields writes the warning's keys.
func (x Warning) WriteFields(w FieldWriter) {
	w.Str("step", x.Step)
	w.Str("key", x.Key)
	w.Str("message", x.Message)
	strOpt(w, "near", x.Near)
}

// WriteFields writes the plan step's keys.
func (s PlanStep) WriteFields(w FieldWriter) {
	w.Str("name", s.Name)
	w.Str("fun", s.Fun)
	w.Any("locs", s.Locs)
	w.Any("deps", s.Deps)
	w.Any("candidates", s.Candidates)
	if s.Node == nil {
		w.Any("node", nil)
	} else {
		w.Str("node", *s.Node)
	}
	w.Any("routable", s.Routable)
}

// WriteFields writes the exec request's keys.
func (r ExecRequest) WriteFields(w FieldWriter) {
	w.Str("cluster", r.Cluster)
	w.Str("id", r.ID)
	w.Str("fun", r.Fun)
	w.Any("args", r.Args)
	w.Any("kwargs", r.Kwargs)
	intOpt(w, "deadline_ms", r.DeadlineMS)
	strOpt(w, "attempt", r.Attempt)
	if r.Timing {
		w.Any("timing", true)
	}
}

// WriteFields writes the cancel's keys.
func (c Cancel) WriteFields(w FieldWriter) {
	w.Str("cluster", c.Cluster)
	w.Str("id", c.ID)
	strOpt(w, "attempt", c.Attempt)
}

// WriteFields writes the cancel request's keys.
func (c CancelRequest) WriteFields(w FieldWriter) { w.Str("id", c.ID) }

// WriteFields writes the cancel answer's keys.
func (a CancelAnswer) WriteFields(w FieldWriter) {
	w.Str("id", a.ID)
	w.Str("node", a.Node)
}

// WriteFields writes the planner ack's keys.
func (a PlannerAck) WriteFields(w FieldWriter) {
	w.Str("cluster", a.Cluster)
	w.Str("id", a.ID)
	w.Str("planner", a.Planner)
	w.Int("incarnation", a.Incarnation)
	strOpt(w, "instance", a.Instance)
}

// WriteFields writes {"result": ...} or {"error": ...}.
func (r ExecReply) WriteFields(w FieldWriter) {
	if r.Error != nil {
		ExecError{Error: r.Error, Timing: r.Timing}.WriteFields(w)
		return
	}
	ExecResult{Result: r.Result, Timing: r.Timing}.WriteFields(w)
}

// WriteFields writes {"result": ...}.
func (r ExecResult) WriteFields(w FieldWriter) {
	w.Any("result", r.Result)
	if r.Timing != nil {
		w.Any("timing", r.Timing)
	}
}

// WriteFields writes {"error": ...}.
func (r ExecError) WriteFields(w FieldWriter) {
	if r.Error == nil {
		w.Any("error", nil)
	} else {
		w.Any("error", r.Error)
	}
	if r.Timing != nil {
		w.Any("timing", r.Timing)
	}
}

// WriteFields writes the error's keys.
func (e *Error) WriteFields(w FieldWriter) {
	w.Str("code", string(e.Code))
	w.Str("message", e.Message)
	strOpt(w, "step", e.Step)
	strOpt(w, "node", e.Node)
	if e.Details != nil {
		w.Any("details", e.Details)
	}
}

// WriteFields writes the hello's keys.
func (h Hello) WriteFields(w FieldWriter) {
	strOpt(w, "kind", h.Kind)
	w.Str("cluster", h.Cluster)
	w.Str("node", h.Node)
	w.Int("incarnation", h.Incarnation)
	strOpt(w, "instance", h.Instance)
	w.Int("version", h.Version)
	w.Any("funs", h.Funs)
	w.Any("codecs", h.Codecs)
	strOpt(w, "bare", h.Bare)
	w.Any("advertised_urls", h.AdvertisedURLs)
	if len(h.Meta) > 0 {
		w.Any("meta", h.Meta)
	}
	w.Int("proto", int64(h.Proto))
	if len(h.Idempotent) > 0 {
		w.Any("idempotent", h.Idempotent)
	}
	if len(h.RetryAfterMS) > 0 {
		w.Any("retry_after_ms", h.RetryAfterMS)
	}
	if len(h.Retry) > 0 {
		w.Any("retry", h.Retry)
	}
}

// WriteFields writes the load's keys.
func (l Load) WriteFields(w FieldWriter) {
	w.Int("inflight", l.Inflight)
	w.Int("limit", l.Limit)
}

// WriteFields writes the heartbeat's keys.
func (h Heartbeat) WriteFields(w FieldWriter) {
	w.Str("cluster", h.Cluster)
	w.Str("node", h.Node)
	w.Int("incarnation", h.Incarnation)
	strOpt(w, "instance", h.Instance)
	w.Int("version", h.Version)
	w.Int("seq", h.Seq)
	w.Any("load", h.Load)
}

// WriteFields writes the goodbye's keys.
func (g Goodbye) WriteFields(w FieldWriter) {
	strOpt(w, "kind", g.Kind)
	w.Str("cluster", g.Cluster)
	w.Str("node", g.Node)
	w.Int("incarnation", g.Incarnation)
	strOpt(w, "instance", g.Instance)
}

// strOpt writes a key tagged omitempty.
func strOpt(w FieldWriter, k, v string) {
	if v != "" {
		w.Str(k, v)
	}
}

// intOpt writes a key tagged omitempty.
func intOpt(w FieldWriter, k string, v int64) {
	if v != 0 {
		w.Int(k, v)
	}
}

// knownKeys holds every key of docs/PROTOCOL.md's bodies, for Intern.
var knownKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"id", "cmds", "name", "fun", "args", "kwargs", "locs", "timeout_ms", "results",
		"error", "code", "message", "step", "node", "details", "cluster", "deadline_ms", "result",
		"incarnation", "instance", "version", "funs", "codecs", "advertised_urls", "meta", "proto",
		"seq", "load", "inflight", "limit", "$ref", "path", "kind", "attempt", "planner",
		"idempotent", "retry_after_ms", "on_error", "errors", "cause", "route_wait_ms", "waited_ms", "dry_run", "plan", "problems", "warnings", "near", "deps", "candidates",
		"retry", "attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "jitter",
		"trace", "timing", "queue_us", "run_us", "fetched_bytes", "start_us", "stream", "progress", "steps",
		"split_results", "trace_truncated", "durable", "submit", "result_ttl_ms", "status", "steps_done", "wait_ms",
	} {
		m[k] = k
	}
	return m
}()

// Intern returns b as a string: the shared one when b is a key of the
// protocol, so that a decoder does not allocate a copy per message.
func Intern(b []byte) string {
	if s, ok := knownKeys[string(b)]; ok {
		return s
	}
	return string(b)
}
