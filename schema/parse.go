package schema

import (
	"fmt"
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

func typeErr(key, want string, got any) *Error { return kindErr(key, want, Kind(KindOf(got))) }

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

func integer(m map[string]any, prefix, key string, required bool) (int64, error) {
	v, ok := m[key]
	if !ok || v == nil {
		if required {
			return 0, missing(join(prefix, key))
		}
		return 0, nil
	}
	n, ok := IntOf(v)
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

// ParsePlanned reads a stream's planned event.
func ParsePlanned(v any) (*Planned, error) { return ReadPlanned(TreeReader(v)) }

// ParseTraceEntry reads a stream's step event.
func ParseTraceEntry(v any) (*TraceEntry, error) {
	t := &TraceEntry{}
	if _, err := readStruct(TreeReader(v), t, "trace[0]", "trace[0]", traceFields); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseRequest reads an RPC request (docs/PROTOCOL.md §4) from a decoded
// tree: ReadRequest over TreeReader(v).
func ParseRequest(v any) (*Request, error) {
	r, err := ReadRequest(TreeReader(v))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ParseResponse reads an RPC response (docs/PROTOCOL.md §5) from a decoded
// tree.
func ParseResponse(v any) (*Response, error) { return ReadResponse(TreeReader(v)) }

// ParseExecRequest reads an exec request (docs/PROTOCOL.md §6) from a
// decoded tree.
func ParseExecRequest(v any) (*ExecRequest, error) { return ReadExecRequest(TreeReader(v)) }

// ParseExecReply reads an exec reply (docs/PROTOCOL.md §6) from a decoded
// tree.
func ParseExecReply(v any) (*ExecReply, error) { return ReadExecReply(TreeReader(v)) }

// ParseCancel reads a cancel (see Cancel).
func ParseCancel(v any) (*Cancel, error) { return ReadCancel(TreeReader(v)) }

// ParseCancelRequest reads a CancelRequest.
func ParseCancelRequest(v any) (*CancelRequest, error) { return ReadCancelRequest(TreeReader(v)) }

// ParseCancelAnswer reads a node's answer to a cancel.
func ParseCancelAnswer(v any) (*CancelAnswer, error) { return ReadCancelAnswer(TreeReader(v)) }

// ParsePlannerAck reads a PlannerAck.
func ParsePlannerAck(v any) (*PlannerAck, error) { return ReadPlannerAck(TreeReader(v)) }

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
func ParseHeartbeat(v any) (*Heartbeat, error) { return ReadHeartbeat(TreeReader(v)) }

// ParseGoodbye reads a goodbye (docs/PROTOCOL.md §7).
func ParseGoodbye(v any) (*Goodbye, error) { return ReadGoodbye(TreeReader(v)) }

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
		return tooLong(key, limit, maxBytes)
	}
	return nil
}

// tooLong is the error of a string read from key longer than max bytes.
func tooLong(key, limit string, maxBytes int) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: longer than %d bytes", key, maxBytes),
		Details: map[string]any{"key": key, "limit": limit, "max": int64(maxBytes)}}
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
