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

// ParseRequest reads an RPC request (PROTOCOL.md §4). It checks types and
// names; the planner checks references, duplicates and cycles.
func ParseRequest(v any) (*Request, error) {
	m, err := asMap(v, "request")
	if err != nil {
		return nil, err
	}
	r := &Request{}
	if r.ID, err = str(m, "", "id", false); err != nil {
		return nil, err
	}
	if r.TimeoutMS, err = integer(m, "", "timeout_ms", false); err != nil {
		return nil, err
	}
	if r.TimeoutMS < 0 {
		return nil, invalid("timeout_ms", "must not be negative")
	}
	if r.Results, err = str(m, "", "results", false); err != nil {
		return nil, err
	}
	switch r.Results {
	case "":
		r.Results = ResultsSinks
	case ResultsSinks, ResultsAll:
	default:
		return nil, invalid("results", "want %q or %q, got %q", ResultsSinks, ResultsAll, r.Results)
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
		if err := parseCommand(c, fmt.Sprintf("cmds[%d]", i), &r.Cmds[i]); err != nil {
			return nil, err
		}
	}
	return r, nil
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
	if err := CheckFunName(c.Fun); err != nil {
		return invalid(join(key, "fun"), "%s", err.Message)
	}
	if c.Args, e = optList(m, key, "args"); e != nil {
		return e
	}
	if c.Kwargs, e = optMap(m, key, "kwargs"); e != nil {
		return e
	}
	if c.Locs, e = strList(m["locs"], join(key, "locs")); e != nil {
		return e
	}
	for i, l := range c.Locs {
		if err := CheckLoc(l); err != nil {
			return invalid(fmt.Sprintf("%s.locs[%d]", key, i), "%s", err.Message)
		}
	}
	return nil
}

// ParseResponse reads an RPC response (PROTOCOL.md §5).
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
	return r, nil
}

// ParseExecRequest reads an exec request (PROTOCOL.md §6).
func ParseExecRequest(v any) (*ExecRequest, error) {
	m, err := asMap(v, "exec")
	if err != nil {
		return nil, err
	}
	r := &ExecRequest{}
	if r.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if r.ID, err = str(m, "", "id", false); err != nil {
		return nil, err
	}
	if r.Fun, err = str(m, "", "fun", true); err != nil {
		return nil, err
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
	if r.Attempt, err = str(m, "", "attempt", false); err != nil {
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
	if c.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if c.ID, err = str(m, "", "id", true); err != nil {
		return nil, err
	}
	if c.Attempt, err = str(m, "", "attempt", false); err != nil {
		return nil, err
	}
	return c, nil
}

// ParsePlannerAck reads a PlannerAck.
func ParsePlannerAck(v any) (*PlannerAck, error) {
	m, err := asMap(v, "planner ack")
	if err != nil {
		return nil, err
	}
	a := &PlannerAck{}
	if a.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if a.ID, err = str(m, "", "id", false); err != nil {
		return nil, err
	}
	if a.Planner, err = str(m, "", "planner", true); err != nil {
		return nil, err
	}
	if a.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	return a, nil
}

// ParseExecReply reads an exec reply (PROTOCOL.md §6).
func ParseExecReply(v any) (*ExecReply, error) {
	m, err := asMap(v, "reply")
	if err != nil {
		return nil, err
	}
	if ev, ok := m["error"]; ok && ev != nil {
		e, err := ParseError(ev, "error")
		if err != nil {
			return nil, err
		}
		return &ExecReply{Error: e}, nil
	}
	res, ok := m["result"]
	if !ok {
		return nil, missing("result")
	}
	return &ExecReply{Result: res}, nil
}

// ParseHello reads a hello (PROTOCOL.md §7).
func ParseHello(v any) (*Hello, error) {
	m, err := asMap(v, "hello")
	if err != nil {
		return nil, err
	}
	h := &Hello{Proto: Proto}
	if h.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if h.Node, err = str(m, "", "node", true); err != nil {
		return nil, err
	}
	if err := CheckID(h.Node); err != nil {
		return nil, invalid("node", "%s", err.Message)
	}
	if h.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	if h.Version, err = integer(m, "", "version", true); err != nil {
		return nil, err
	}
	if p, err := integer(m, "", "proto", false); err != nil {
		return nil, err
	} else if p != 0 {
		h.Proto = int(p)
	}
	funs, err := optMap(m, "", "funs")
	if err != nil {
		return nil, err
	}
	h.Funs = make(map[string][]string, len(funs))
	for f, locs := range funs {
		l, err := strList(locs, "funs."+f)
		if err != nil {
			return nil, err
		}
		if l == nil {
			l = []string{}
		}
		h.Funs[f] = l
	}
	if h.Codecs, err = strList(m["codecs"], "codecs"); err != nil {
		return nil, err
	}
	if h.AdvertisedURLs, err = strList(m["advertised_urls"], "advertised_urls"); err != nil {
		return nil, err
	}
	if h.Idempotent, err = strList(m["idempotent"], "idempotent"); err != nil {
		return nil, err
	}
	retry, err := optMap(m, "", "retry_after_ms")
	if err != nil {
		return nil, err
	}
	for f := range retry {
		ms, err := integer(retry, "retry_after_ms", f, true)
		if err != nil {
			return nil, err
		}
		if ms > 0 {
			if h.RetryAfterMS == nil {
				h.RetryAfterMS = make(map[string]int64, len(retry))
			}
			h.RetryAfterMS[f] = ms
		}
	}
	meta, err := optMap(m, "", "meta")
	if err != nil {
		return nil, err
	}
	if len(meta) > 0 {
		h.Meta = make(map[string]string, len(meta))
		for k, mv := range meta {
			if s, ok := mv.(string); ok {
				h.Meta[k] = s
			} else {
				h.Meta[k] = fmt.Sprint(mv)
			}
		}
	}
	return h, nil
}

// ParseHeartbeat reads a heartbeat (PROTOCOL.md §7).
func ParseHeartbeat(v any) (*Heartbeat, error) {
	m, err := asMap(v, "heartbeat")
	if err != nil {
		return nil, err
	}
	h := &Heartbeat{}
	if h.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if h.Node, err = str(m, "", "node", true); err != nil {
		return nil, err
	}
	if h.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	if h.Version, err = integer(m, "", "version", true); err != nil {
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

// ParseGoodbye reads a goodbye (PROTOCOL.md §7).
func ParseGoodbye(v any) (*Goodbye, error) {
	m, err := asMap(v, "goodbye")
	if err != nil {
		return nil, err
	}
	g := &Goodbye{}
	if g.Cluster, err = str(m, "", "cluster", true); err != nil {
		return nil, err
	}
	if g.Node, err = str(m, "", "node", true); err != nil {
		return nil, err
	}
	if g.Incarnation, err = integer(m, "", "incarnation", true); err != nil {
		return nil, err
	}
	return g, nil
}

// CheckID checks a cluster or node id: 1–64 of [A-Za-z0-9_-].
func CheckID(s string) *Error {
	if len(s) == 0 || len(s) > 64 {
		return Errorf(CodeInvalidRequest, "id %q must be 1 to 64 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return Errorf(CodeInvalidRequest, "id %q may hold only A-Z a-z 0-9 _ -", s)
		}
	}
	return nil
}

// CheckFunName checks a function name: 1–128 printable characters, no
// spaces, no '.', '*' or '>'.
func CheckFunName(s string) *Error {
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

// CheckLoc checks a loc: 1–128 printable characters, no spaces.
func CheckLoc(s string) *Error { return checkPrintable(s, "loc") }

func checkPrintable(s, what string) *Error {
	n := utf8.RuneCountInString(s)
	if n == 0 || n > 128 {
		return Errorf(CodeInvalidRequest, "%s %s must be 1 to 128 characters", what, strconv.Quote(s))
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalidRequest, "%s %s is not valid UTF-8", what, strconv.Quote(s))
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Errorf(CodeInvalidRequest, "%s %s must hold only printable characters and no spaces", what, strconv.Quote(s))
		}
	}
	return nil
}
