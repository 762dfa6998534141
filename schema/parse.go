package schema

import (
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// The Parse functions read a decoded value tree into a wire type. Unknown keys
// are ignored; a missing required key or a value of the wrong type is an
// *Error with code INVALID_REQUEST whose message and details.key name the key.

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// KindOf names the kind of a decoded value as error messages do: "null",
// "bool", "number", "string", "binary", "list" or "map" (else its Go type).
func KindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int64, uint64, float64, int, int8, int16, int32, uint, uint8, uint16, uint32, float32:
		return "number"
	case string:
		return "string"
	case []byte:
		return "binary"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

func typeErr(key, want string, got any) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: fmt.Sprintf("%s: want %s, got %s", key, want, KindOf(got)),
		Details: map[string]any{"key": key},
	}
}

func missing(key string) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: fmt.Sprintf("%s: required key missing", key),
		Details: map[string]any{"key": key},
	}
}

func invalid(key, format string, args ...any) *Error {
	return &Error{
		Code:    CodeInvalidRequest,
		Message: key + ": " + fmt.Sprintf(format, args...),
		Details: map[string]any{"key": key},
	}
}

func asMap(v any, key string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, typeErr(key, "map", v)
	}
	return m, nil
}

// listMap reads element i of the list under key k as a map, and names it
// (k[i]) for the errors about its keys.
func listMap(v any, k string, i int) (map[string]any, string, error) {
	key := fmt.Sprintf("%s[%d]", k, i)
	mm, err := asMap(v, key)
	return mm, key, err
}

func str(m map[string]any, prefix, key string, required bool) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		if required {
			return "", missing(join(prefix, key))
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", typeErr(join(prefix, key), "string", v)
	}
	return s, nil
}

// toInt converts a decoded number to int64 when it is an integer that fits.
func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	case float64:
		if n == math.Trunc(n) && n >= -(1<<63) && n < 1<<63 {
			return int64(n), true
		}
	}
	return 0, false
}

func integer(m map[string]any, prefix, key string, required bool) (int64, error) {
	v, ok := m[key]
	if !ok || v == nil {
		if required {
			return 0, missing(join(prefix, key))
		}
		return 0, nil
	}
	n, ok := toInt(v)
	if !ok {
		return 0, typeErr(join(prefix, key), "integer", v)
	}
	return n, nil
}

func strList(v any, key string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, typeErr(key, "list of strings", v)
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, typeErr(fmt.Sprintf("%s[%d]", key, i), "string", e)
		}
		out[i] = s
	}
	return out, nil
}

func optList(m map[string]any, prefix, key string) ([]any, error) {
	v := m[key]
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, typeErr(join(prefix, key), "list", v)
	}
	return l, nil
}

func optMap(m map[string]any, prefix, key string) (map[string]any, error) {
	v := m[key]
	if v == nil {
		return nil, nil
	}
	mm, ok := v.(map[string]any)
	if !ok {
		return nil, typeErr(join(prefix, key), "map", v)
	}
	return mm, nil
}

// ParseRequest reads an RPC request (docs/PROTOCOL.md §4). It checks types and
// names; the planner checks references, duplicates and cycles.
func ParseRequest(v any) (*Request, error) {
	m, err := asMap(v, "request")
	if err != nil {
		return nil, err
	}
	r := &Request{}
	if r.ID, err = boundedStr(m, "id", false, MaxRequestIDLen); err != nil {
		return nil, err
	}
	if r.TimeoutMS, err = integer(m, "", "timeout_ms", false); err != nil {
		return nil, err
	}
	if r.TimeoutMS < 0 {
		return nil, invalid("timeout_ms", "must not be negative") // a larger one is capped
	}
	if r.DeadlineMS, err = integer(m, "", "deadline_ms", false); err != nil {
		return nil, err
	}
	if r.DeadlineMS < 0 || r.DeadlineMS > MaxProtoInt {
		return nil, invalid("deadline_ms", "must be 0 to 2^53-1 (unix milliseconds)")
	}
	if err := parseOptions(m, r); err != nil {
		return nil, err
	}
	raw, ok := m["cmds"]
	if !ok || raw == nil {
		return nil, missing("cmds")
	}
	cmds, ok := raw.([]any)
	if !ok {
		return nil, typeErr("cmds", "list", raw)
	}
	if len(cmds) == 0 {
		return nil, invalid("cmds", "must hold at least one command")
	}
	r.Cmds = make([]Command, len(cmds))
	for i, c := range cmds {
		if err := parseCommand(c, cmdKey(i), &r.Cmds[i]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// parseOptions reads the request keys that say how to run it: results,
// on_error, route_wait_ms and the flags.
func parseOptions(m map[string]any, r *Request) error {
	var err error
	if r.Results, err = str(m, "", "results", false); err != nil {
		return err
	}
	switch r.Results {
	case "":
		r.Results = ResultsSinks
	case ResultsSinks, ResultsAll:
	default:
		return invalid("results", "want %q or %q, got %s", ResultsSinks, ResultsAll, Clip(r.Results))
	}
	if r.OnError, err = str(m, "", "on_error", false); err != nil {
		return err
	}
	switch r.OnError {
	case "", OnErrorStop, OnErrorContinue: // "" is "stop"
	default:
		return invalid("on_error", "want %q or %q, got %s", OnErrorStop, OnErrorContinue, Clip(r.OnError))
	}
	if r.RouteWaitMS, err = integer(m, "", "route_wait_ms", false); err != nil {
		return err
	}
	if r.RouteWaitMS < 0 || r.RouteWaitMS > MaxProtoInt {
		return invalid("route_wait_ms", "must be 0 to 2^53-1 (the request's budget bounds it)")
	}
	for _, f := range []struct {
		key string
		dst *bool
	}{{"dry_run", &r.DryRun}, {"trace", &r.Trace}, {"stream", &r.Stream}, {"progress", &r.Progress},
		{"split_results", &r.SplitResults}} {
		if *f.dst, err = optBool(m, f.key); err != nil {
			return err
		}
	}
	return nil
}

// cmdKeys are the keys of the first commands, made once: a request's
// commands are named in errors only.
var cmdKeys = func() []string {
	l := make([]string, 64)
	for i := range l {
		l[i] = fmt.Sprintf("cmds[%d]", i)
	}
	return l
}()

func cmdKey(i int) string {
	if i < len(cmdKeys) {
		return cmdKeys[i]
	}
	return fmt.Sprintf("cmds[%d]", i)
}

func parseCommand(v any, key string, c *Command) error {
	m, err := asMap(v, key)
	if err != nil {
		return err
	}
	var e error
	if c.Name, e = str(m, key, "name", true); e != nil {
		return e
	}
	if c.Name == "" {
		return invalid(join(key, "name"), "must not be empty")
	}
	if c.Fun, e = str(m, key, "fun", true); e != nil {
		return e
	}
	if err := checkFunName(c.Fun); err != nil {
		return invalid(join(key, "fun"), "%s", err.Message)
	}
	if c.Args, e = optList(m, key, "args"); e != nil {
		return e
	}
	if c.Kwargs, e = optMap(m, key, "kwargs"); e != nil {
		return e
	}
	if raw, ok := m["locs"]; ok && raw != nil {
		if c.Locs, e = strList(raw, join(key, "locs")); e != nil {
			return e
		}
	}
	for i, l := range c.Locs {
		if err := checkLoc(l); err != nil {
			return invalid(fmt.Sprintf("%s.locs[%d]", key, i), "%s", err.Message)
		}
	}
	return nil
}

// ParseResponse reads an RPC response (docs/PROTOCOL.md §5).
func ParseResponse(v any) (*Response, error) {
	m, err := asMap(v, "response")
	if err != nil {
		return nil, err
	}
	r := &Response{}
	if r.ID, err = str(m, "", "id", false); err != nil {
		return nil, err
	}
	if r.Results, err = optMap(m, "", "results"); err != nil {
		return nil, err
	}
	if ev, ok := m["error"]; ok && ev != nil {
		if r.Error, err = ParseError(ev, "error"); err != nil {
			return nil, err
		}
	}
	if err := parsePlan(m, r); err != nil {
		return nil, err
	}
	if err := parseTrace(m, r); err != nil {
		return nil, err
	}
	if r.TraceTruncated, err = optBool(m, "trace_truncated"); err != nil {
		return nil, err
	}
	if err := parseWarnings(m, r); err != nil {
		return nil, err
	}
	if ev, ok := m["errors"]; ok && ev != nil {
		em, ok := ev.(map[string]any)
		if !ok {
			return nil, typeErr("errors", "map", ev)
		}
		r.Errors = make(map[string]*Error, len(em))
		for name, e := range em {
			if r.Errors[name], err = ParseError(e, "errors."+Clip(name)); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// parseWarnings reads a dry run's warnings.
func parseWarnings(m map[string]any, r *Response) error {
	l, err := optList(m, "", "warnings")
	if err != nil || l == nil {
		return err
	}
	r.Warnings = make([]Warning, len(l))
	for i, v := range l {
		wm, key, err := listMap(v, "warnings", i)
		if err != nil {
			return err
		}
		x := &r.Warnings[i]
		for _, f := range []struct {
			k   string
			dst *string
			req bool
		}{{"step", &x.Step, true}, {"key", &x.Key, true}, {"message", &x.Message, true}, {"near", &x.Near, false}} {
			if *f.dst, err = str(wm, key, f.k, f.req); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParsePlanned reads a stream's planned event.
func ParsePlanned(v any) (*Planned, error) {
	m, err := asMap(v, "planned")
	if err != nil {
		return nil, err
	}
	p := &Planned{}
	if p.ID, err = boundedStr(m, "id", false, MaxRequestIDLen); err != nil {
		return nil, err
	}
	if p.Planner, err = idField(m, "planner"); err != nil {
		return nil, err
	}
	if p.Incarnation, err = integer(m, "", "incarnation", false); err != nil {
		return nil, err
	}
	if p.Instance, err = boundedStr(m, "instance", false, MaxInstanceLen); err != nil {
		return nil, err
	}
	if p.Steps, err = integer(m, "", "steps", false); err != nil {
		return nil, err
	}
	return p, nil
}

// ParseTraceEntry reads a stream's step event.
func ParseTraceEntry(v any) (*TraceEntry, error) {
	r := &Response{}
	if err := parseTrace(map[string]any{"trace": []any{v}}, r); err != nil {
		return nil, err
	}
	return &r.Trace[0], nil
}

// optBool reads an optional boolean key (absent or null: false).
func optBool(m map[string]any, key string) (bool, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, typeErr(key, "boolean", v)
	}
	return b, nil
}

// parseTrace reads a response's trace into r.
func parseTrace(m map[string]any, r *Response) error {
	l, err := optList(m, "", "trace")
	if err != nil || l == nil {
		return err
	}
	r.Trace = make([]TraceEntry, len(l))
	for i, v := range l {
		em, key, err := listMap(v, "trace", i)
		if err != nil {
			return err
		}
		e := &r.Trace[i]
		for _, f := range []struct {
			k   string
			dst *string
		}{{"step", &e.Step}, {"fun", &e.Fun}, {"node", &e.Node}, {"code", &e.Code}} {
			if *f.dst, err = str(em, key, f.k, false); err != nil {
				return err
			}
		}
		for _, f := range []struct {
			k   string
			dst *int64
		}{{"attempt", &e.Attempt}, {"start_us", &e.StartUS}, {"queue_us", &e.QueueUS}, {"run_us", &e.RunUS}, {"fetched_bytes", &e.FetchedBytes}} {
			if *f.dst, err = integer(em, key, f.k, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseTiming reads an exec reply's optional timing.
func parseTiming(m map[string]any) (*StepTiming, error) {
	tv, ok := m["timing"]
	if !ok || tv == nil {
		return nil, nil
	}
	tm, err := asMap(tv, "timing")
	if err != nil {
		return nil, err
	}
	t := &StepTiming{}
	if t.QueueUS, err = integer(tm, "timing", "queue_us", false); err != nil {
		return nil, err
	}
	if t.RunUS, err = integer(tm, "timing", "run_us", false); err != nil {
		return nil, err
	}
	if t.FetchedBytes, err = integer(tm, "timing", "fetched_bytes", false); err != nil {
		return nil, err
	}
	return t, nil
}

// parsePlan reads a dry run's plan and problems into r.
func parsePlan(m map[string]any, r *Response) error {
	if pv, ok := m["plan"]; ok && pv != nil {
		l, ok := pv.([]any)
		if !ok {
			return typeErr("plan", "list", pv)
		}
		r.Plan = make([]PlanStep, len(l))
		for i, v := range l {
			key := fmt.Sprintf("plan[%d]", i)
			sm, err := asMap(v, key)
			if err != nil {
				return err
			}
			st := &r.Plan[i]
			if st.Name, err = str(sm, key, "name", true); err != nil {
				return err
			}
			if st.Fun, err = str(sm, key, "fun", true); err != nil {
				return err
			}
			for _, f := range []struct {
				k   string
				dst *[]string
			}{{"locs", &st.Locs}, {"deps", &st.Deps}, {"candidates", &st.Candidates}} {
				if *f.dst, err = strList(sm[f.k], key+"."+f.k); err != nil {
					return err
				}
			}
			if nv, ok := sm["node"].(string); ok {
				st.Node = &nv
			}
			if _, ok := sm["routable"]; !ok { // a node before routable: a pick means routable
				st.Routable = st.Node != nil
			} else if st.Routable, err = optBool(sm, "routable"); err != nil {
				return err
			}
		}
	}
	if pv, ok := m["problems"]; ok && pv != nil {
		l, ok := pv.([]any)
		if !ok {
			return typeErr("problems", "list", pv)
		}
		r.Problems = make([]*Error, len(l))
		for i, v := range l {
			var err error
			if r.Problems[i], err = ParseError(v, fmt.Sprintf("problems[%d]", i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseExecRequest reads an exec request (docs/PROTOCOL.md §6).
func ParseExecRequest(v any) (*ExecRequest, error) {
	m, err := asMap(v, "exec")
	if err != nil {
		return nil, err
	}
	r := &ExecRequest{}
	if r.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if r.ID, err = boundedStr(m, "id", false, MaxExecIDLen); err != nil {
		return nil, err
	}
	if r.Fun, err = str(m, "", "fun", true); err != nil {
		return nil, err
	}
	if e := checkFunName(r.Fun); e != nil {
		return nil, invalid("fun", "%s", e.Message)
	}
	if r.Args, err = optList(m, "", "args"); err != nil {
		return nil, err
	}
	if r.Kwargs, err = optMap(m, "", "kwargs"); err != nil {
		return nil, err
	}
	if r.DeadlineMS, err = integer(m, "", "deadline_ms", false); err != nil {
		return nil, err
	}
	if r.DeadlineMS < 0 || r.DeadlineMS > MaxProtoInt {
		return nil, invalid("deadline_ms", "must be 0 to 2^53-1 (unix milliseconds)")
	}
	if r.Attempt, err = boundedStr(m, "attempt", false, MaxAttemptLen); err != nil {
		return nil, err
	}
	if r.Timing, err = optBool(m, "timing"); err != nil {
		return nil, err
	}
	return r, nil
}

// ParseCancel reads a cancel (see Cancel).
func ParseCancel(v any) (*Cancel, error) {
	m, err := asMap(v, "cancel")
	if err != nil {
		return nil, err
	}
	c := &Cancel{}
	if c.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if c.ID, err = boundedStr(m, "id", true, MaxExecIDLen); err != nil {
		return nil, err
	}
	if c.Attempt, err = boundedStr(m, "attempt", false, MaxAttemptLen); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseCancelRequest reads a CancelRequest.
func ParseCancelRequest(v any) (*CancelRequest, error) {
	m, err := asMap(v, "cancel")
	if err != nil {
		return nil, err
	}
	c := &CancelRequest{}
	if c.ID, err = boundedStr(m, "id", true, MaxRequestIDLen); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, invalid("id", "must not be empty")
	}
	return c, nil
}

// ParseCancelAnswer reads a node's answer to a cancel.
func ParseCancelAnswer(v any) (*CancelAnswer, error) {
	m, err := asMap(v, "cancel answer")
	if err != nil {
		return nil, err
	}
	a := &CancelAnswer{}
	if a.ID, err = boundedStr(m, "id", true, MaxRequestIDLen); err != nil {
		return nil, err
	}
	if a.Node, err = idField(m, "node"); err != nil {
		return nil, err
	}
	return a, nil
}

// ParsePlannerAck reads a PlannerAck.
func ParsePlannerAck(v any) (*PlannerAck, error) {
	m, err := asMap(v, "planner ack")
	if err != nil {
		return nil, err
	}
	a := &PlannerAck{}
	if a.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if a.ID, err = boundedStr(m, "id", false, MaxRequestIDLen); err != nil {
		return nil, err
	}
	if a.Planner, err = idField(m, "planner"); err != nil {
		return nil, err
	}
	if a.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	if a.Instance, err = boundedStr(m, "instance", false, MaxInstanceLen); err != nil {
		return nil, err
	}
	return a, nil
}

// ParseExecReply reads an exec reply (docs/PROTOCOL.md §6).
func ParseExecReply(v any) (*ExecReply, error) {
	m, err := asMap(v, "reply")
	if err != nil {
		return nil, err
	}
	timing, err := parseTiming(m)
	if err != nil {
		return nil, err
	}
	if ev, ok := m["error"]; ok && ev != nil {
		e, err := ParseError(ev, "error")
		if err != nil {
			return nil, err
		}
		return &ExecReply{Error: e, Timing: timing}, nil
	}
	res, ok := m["result"]
	if !ok {
		return nil, missing("result")
	}
	return &ExecReply{Result: res, Timing: timing}, nil
}

// ParseHello reads a hello (docs/PROTOCOL.md §7).
func ParseHello(v any) (*Hello, error) {
	m, err := asMap(v, "hello")
	if err != nil {
		return nil, err
	}
	h := &Hello{Proto: Proto}
	if h.Kind, err = kindField(m, KindHello); err != nil {
		return nil, err
	}
	if h.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if h.Node, err = idField(m, "node"); err != nil {
		return nil, err
	}
	if h.Incarnation, h.Version, err = incarnationVersion(m); err != nil {
		return nil, err
	}
	if h.Instance, err = boundedStr(m, "instance", false, MaxInstanceLen); err != nil {
		return nil, err
	}
	if p, err := integer(m, "", "proto", false); err != nil {
		return nil, err
	} else if p != 0 {
		h.Proto = int(min(max(p, -1), 1<<16)) // out-of-range protos stay unsupported
	}
	if h.Funs, err = parseFuns(m); err != nil {
		return nil, err
	}
	if h.Codecs, err = boundedList(m, "codecs", maxCodecs, maxShortString); err != nil {
		return nil, err
	}
	if h.Bare, err = boundedStr(m, "bare", false, maxShortString); err != nil {
		return nil, err
	}
	if h.AdvertisedURLs, err = boundedList(m, "advertised_urls", -1, maxURLLen); err != nil {
		return nil, err
	}
	// A node may sit on a NATS cluster of many servers: keep the first
	// MaxURLs rather than drop its hello.
	h.AdvertisedURLs = h.AdvertisedURLs[:min(len(h.AdvertisedURLs), MaxURLs)]
	if h.Idempotent, err = boundedList(m, "idempotent", MaxFuns, 256); err != nil {
		return nil, err
	}
	if h.RetryAfterMS, err = parseRetryAfter(m); err != nil {
		return nil, err
	}
	if h.Meta, err = parseMeta(m); err != nil {
		return nil, err
	}
	return h, nil
}

// parseFuns reads a hello's funs: function names, each with its locs.
func parseFuns(m map[string]any) (map[string][]string, error) {
	funs, err := optMap(m, "", "funs")
	if err != nil {
		return nil, err
	}
	if len(funs) > MaxFuns {
		return nil, tooMany("funs", len(funs), MaxFuns)
	}
	out := make(map[string][]string, len(funs))
	for f, locs := range funs {
		if e := checkFunName(f); e != nil {
			return nil, invalid("funs", "%s", e.Message)
		}
		l, err := strList(locs, "funs."+f)
		if err != nil {
			return nil, err
		}
		if len(l) > MaxLocs {
			return nil, tooMany("funs."+f, len(l), MaxLocs)
		}
		for _, loc := range l {
			if e := checkLoc(loc); e != nil {
				return nil, invalid("funs."+f, "%s", e.Message)
			}
		}
		if l == nil {
			l = []string{}
		}
		out[f] = l
	}
	return out, nil
}

// parseRetryAfter reads a hello's retry_after_ms; zero values are left
// out.
func parseRetryAfter(m map[string]any) (map[string]int64, error) {
	retry, err := optMap(m, "", "retry_after_ms")
	if err != nil {
		return nil, err
	}
	if len(retry) > MaxFuns {
		return nil, tooMany("retry_after_ms", len(retry), MaxFuns)
	}
	var out map[string]int64
	for f := range retry {
		ms, err := integer(retry, "retry_after_ms", f, true)
		if err != nil {
			return nil, err
		}
		if ms < 0 || ms > maxRetryAfter {
			return nil, invalid("retry_after_ms", "must be 0 to %d ms", maxRetryAfter)
		}
		if ms > 0 {
			if out == nil {
				out = make(map[string]int64, len(retry))
			}
			out[f] = ms
		}
	}
	return out, nil
}

// parseMeta reads a hello's meta: strings, with numbers and booleans kept
// as text.
func parseMeta(m map[string]any) (map[string]string, error) {
	meta, err := optMap(m, "", "meta")
	if err != nil || len(meta) == 0 {
		return nil, err
	}
	if len(meta) > MaxMeta {
		return nil, tooMany("meta", len(meta), MaxMeta)
	}
	out := make(map[string]string, len(meta))
	for k, mv := range meta {
		if len(k) > MaxMetaKey {
			return nil, invalid("meta", "key %s is longer than %d bytes", Clip(k), MaxMetaKey)
		}
		v, ok := mv.(string)
		if !ok {
			if kind := KindOf(mv); kind != "number" && kind != "bool" {
				return nil, typeErr("meta."+k, "string", mv)
			}
			v = fmt.Sprint(mv)
		}
		if err := checkLen("meta."+k, "max_meta_value_len", v, MaxMetaValue); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// incarnationVersion reads the required incarnation (positive) and version
// (not negative) of a hello or heartbeat; both stay below 2^53.
func incarnationVersion(m map[string]any) (inc, version int64, err error) {
	if inc, err = integer(m, "", "incarnation", true); err != nil {
		return 0, 0, err
	}
	if inc <= 0 || inc > MaxProtoInt {
		return 0, 0, invalid("incarnation", "must be 1 to 2^53-1, got %d", inc)
	}
	if version, err = integer(m, "", "version", true); err != nil {
		return 0, 0, err
	}
	if version < 0 || version > MaxProtoInt {
		return 0, 0, invalid("version", "must be 0 to 2^53-1, got %d", version)
	}
	return inc, version, nil
}

// boundedList reads an optional list of strings of at most max entries
// (any number when max < 0), each at most maxLen bytes.
func boundedList(m map[string]any, key string, maxEntries, maxLen int) ([]string, error) {
	raw, ok := m[key].([]any)
	if ok && maxEntries >= 0 && len(raw) > maxEntries {
		return nil, tooMany(key, len(raw), maxEntries)
	}
	l, err := strList(m[key], key)
	if err != nil {
		return nil, err
	}
	for i, s := range l {
		if err := checkLen(fmt.Sprintf("%s[%d]", key, i), "max_"+key+"_len", s, maxLen); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// tooMany is the error of a list or map with more than max entries.
func tooMany(key string, n, maxEntries int) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: %d entries, more than %d", key, n, maxEntries),
		Details: map[string]any{"key": key, "limit": key, "max": int64(maxEntries)}}
}

// ParseHeartbeat reads a heartbeat (docs/PROTOCOL.md §7).
func ParseHeartbeat(v any) (*Heartbeat, error) {
	m, err := asMap(v, "heartbeat")
	if err != nil {
		return nil, err
	}
	h := &Heartbeat{}
	if h.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if h.Node, err = idField(m, "node"); err != nil {
		return nil, err
	}
	if h.Incarnation, h.Version, err = incarnationVersion(m); err != nil {
		return nil, err
	}
	if h.Instance, err = boundedStr(m, "instance", false, MaxInstanceLen); err != nil {
		return nil, err
	}
	if h.Seq, err = integer(m, "", "seq", false); err != nil {
		return nil, err
	}
	load, err := optMap(m, "", "load")
	if err != nil {
		return nil, err
	}
	if load != nil {
		if h.Load.Inflight, err = integer(load, "load", "inflight", false); err != nil {
			return nil, err
		}
		if h.Load.Limit, err = integer(load, "load", "limit", false); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// ParseGoodbye reads a goodbye (docs/PROTOCOL.md §7).
func ParseGoodbye(v any) (*Goodbye, error) {
	m, err := asMap(v, "goodbye")
	if err != nil {
		return nil, err
	}
	g := &Goodbye{}
	if g.Kind, err = kindField(m, KindGoodbye); err != nil {
		return nil, err
	}
	if g.Cluster, err = idField(m, "cluster"); err != nil {
		return nil, err
	}
	if g.Node, err = idField(m, "node"); err != nil {
		return nil, err
	}
	if g.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	if g.Incarnation <= 0 || g.Incarnation > MaxProtoInt {
		return nil, invalid("incarnation", "must be 1 to 2^53-1, got %d", g.Incarnation)
	}
	if g.Instance, err = boundedStr(m, "instance", false, MaxInstanceLen); err != nil {
		return nil, err
	}
	return g, nil
}

// checkID checks a cluster or node id: 1–64 of [A-Za-z0-9_-]. Ids become
// NATS subject tokens (docs/PROTOCOL.md §2), so every id read from the network
// passes here before a subject is built from it.
func checkID(s string) *Error {
	if len(s) == 0 || len(s) > MaxIDLen {
		return Errorf(CodeInvalidRequest, "id %s must be 1 to %d characters", Clip(s), MaxIDLen)
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return Errorf(CodeInvalidRequest, "id %s may hold only A-Z a-z 0-9 _ -", Clip(s))
		}
	}
	return nil
}

// checkLen checks that a string read from key is at most max bytes; limit
// names the bound in the error's details (max_id_len, …).
func checkLen(key, limit, s string, maxBytes int) error {
	if len(s) > maxBytes {
		return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: longer than %d bytes", key, maxBytes),
			Details: map[string]any{"key": key, "limit": limit, "max": int64(maxBytes)}}
	}
	return nil
}

// kindField reads an optional kind key, which must be want when present.
func kindField(m map[string]any, want string) (string, error) {
	k, err := str(m, "", "kind", false)
	if err == nil && k != "" && k != want {
		err = invalid("kind", "want %q, got %s", want, Clip(k))
	}
	return k, err
}

// idField reads a required id (cluster, node) and checks it with CheckID.
func idField(m map[string]any, key string) (string, error) {
	s, err := str(m, "", key, true)
	if err != nil {
		return "", err
	}
	if e := checkID(s); e != nil {
		return "", invalid(key, "%s", e.Message)
	}
	return s, nil
}

// boundedStr reads an optional or required string of at most max bytes.
func boundedStr(m map[string]any, key string, required bool, maxBytes int) (string, error) {
	s, err := str(m, "", key, required)
	if err == nil && len(s) > maxBytes {
		err = checkLen(key, "max_"+key+"_len", s, maxBytes)
	}
	return s, err
}

// checkFunName checks a function name: 1–128 printable characters, no
// spaces, no '.', '*' or '>'.
func checkFunName(s string) *Error {
	if err := checkPrintable(s, "function name"); err != nil {
		return err
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' {
			return Errorf(CodeInvalidRequest, "function name %q must not hold %q", s, r)
		}
	}
	return nil
}

// checkLoc checks a loc: 1–128 printable characters, no spaces.
func checkLoc(s string) *Error { return checkPrintable(s, "loc") }

func checkPrintable(s, what string) *Error {
	n := utf8.RuneCountInString(s)
	if n == 0 || n > 128 {
		return Errorf(CodeInvalidRequest, "%s %s must be 1 to 128 characters", what, Clip(s))
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalidRequest, "%s %s is not valid UTF-8", what, Clip(s))
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Errorf(CodeInvalidRequest, "%s %s must hold only printable characters and no spaces", what, strconv.Quote(s))
		}
	}
	return nil
}

// CheckID checks a cluster or node id: 1–64 of [A-Za-z0-9_-]. The error is
// an *Error (INVALID_REQUEST).
func CheckID(s string) error { return nilIfNone(checkID(s)) }

// CheckFunName checks a function name: 1–128 printable characters, no
// spaces, no '.', '*' or '>'. The error is an *Error (INVALID_REQUEST).
func CheckFunName(s string) error { return nilIfNone(checkFunName(s)) }

// CheckLoc checks a loc: 1–128 printable characters, no spaces. The error
// is an *Error (INVALID_REQUEST).
func CheckLoc(s string) error { return nilIfNone(checkLoc(s)) }

// nilIfNone returns e as an error, nil when e is nil (never a typed nil).
func nilIfNone(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}
