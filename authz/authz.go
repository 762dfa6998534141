// Package authz decides which caller may run which function. The caller's
// identity is what NATS stamped on the request (the Nats-Request-Info
// header a service import with share: true adds, replacing any header of
// that name the caller sent), never what the request body says; the
// policy is a small JSON document (docs/SECURITY.md).
package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mpreg/mpreg/schema"
)

// ErrInvalidPolicy wraps every error of a policy that cannot be used.
var ErrInvalidPolicy = errors.New("authz: invalid policy")

// HeaderRequestInfo is the header nats-server stamps on a request that
// crossed a service import: the importing client's account and, with
// share: true, its user.
const HeaderRequestInfo = "Nats-Request-Info"

// maxRequestInfo bounds the header read (it may hold the caller's JWT).
const maxRequestInfo = 64 << 10

// Caller is who sent a request.
type Caller struct {
	// Stamped is set when NATS stamped the request: the caller is in
	// another account and reached the nodes' through a service import.
	// An unstamped request comes from inside the nodes' own account.
	Stamped bool
	// Account is the caller's NATS account (its name, or its public key
	// in operator mode).
	Account string
	// User is the caller's NATS user: the user name, or the user's public
	// nkey with nkeys and JWTs. Empty when the import does not share it.
	User string
}

// Key is a string that is the same for two callers exactly when they are
// the same caller; "" for callers from the nodes' own account.
func (c Caller) Key() string {
	if !c.Stamped {
		return ""
	}
	return c.Account + "\x00" + c.User
}

// Entry is how a message reached the node, which decides what a missing
// stamp means.
type Entry uint8

const (
	// EntryLocal is a subject of the nodes' own account (rpc, a node's
	// rpc, cancel): a message without a stamp comes from that account.
	EntryLocal Entry = iota
	// EntryImport is a subject the nodes' account exports to callers'
	// accounts (ext.rpc, ext.cancel): only NATS's stamp says who sent
	// the message, and a message without one is refused.
	EntryImport
)

// stampNeedle is HeaderRequestInfo in lower case, for a search of the
// caller-controlled header text in any case.
const stampNeedle = "nats-request-info"

// Msg is what Read needs of a received message.
type Msg struct {
	// Header is the decoded header (nil when there was none, or when it
	// did not decode).
	Header map[string][]string
	// HeaderBytes is the size of the raw header block, 0 when none.
	HeaderBytes int
	// Reply is the message's reply subject.
	Reply string
	// Entry is the kind of subject it came on.
	Entry Entry
}

// importReplyPrefix starts the reply subject nats-server gives a request
// that crossed a service import.
const importReplyPrefix = "_R_."

// Read reads who sent a message. Trust is never inferred from something
// missing:
//
//   - a header block that was present but did not decode (Header is nil
//     while HeaderBytes > 0: nats.go hands such a message over without a
//     header) is refused, since the stamp NATS added may be in it;
//   - the text Nats-Request-Info (in any case) anywhere but as the key of
//     the one stamp line is refused: nats-server appends its stamp to the
//     caller's header block, so a caller that leaves its last line open
//     glues the stamp onto a header of its own, where a reader that looks
//     up the key finds nothing;
//   - a header block larger than its decoded headers written as
//     "Key: value" lines is refused: a line the decoder skips (one with an
//     empty key, such as the stamp glued onto a caller's open ":" line)
//     would otherwise hide the stamp;
//   - more than one stamp, or one that does not parse or names no
//     account, is refused;
//   - a message without a stamp is refused on EntryImport, and on
//     EntryLocal when its reply subject is one nats-server gives requests
//     that crossed an import;
//   - a stamped message is refused on EntryLocal: callers of other
//     accounts come in through the ext subjects, and a deployment that
//     exports the local ones is told so.
//
// When a stamp parsed, the Caller is returned with the error too, so that
// a refusal can name who was refused.
func Read(m Msg) (Caller, error) {
	if m.Header == nil && m.HeaderBytes > 0 {
		return Caller{}, fmt.Errorf("authz: a header block of %d bytes that does not decode", m.HeaderBytes)
	}
	if hidden := m.HeaderBytes - headerSize(m.Header); m.HeaderBytes > 0 && hidden > 0 {
		return Caller{}, fmt.Errorf("authz: the header block holds %d bytes that decode into no header", hidden)
	}
	values := m.Header[HeaderRequestInfo]
	c, err := CallerFrom(values)
	if err != nil {
		return c, err
	}
	if n := stampMentions(m.Header); n != len(values) {
		return c, fmt.Errorf("authz: %s appears %d times in the header outside its own line", HeaderRequestInfo, n-len(values))
	}
	switch {
	case m.Entry == EntryImport && !c.Stamped:
		return c, fmt.Errorf("authz: a message on an imported subject carries no %s stamp", HeaderRequestInfo)
	case m.Entry == EntryLocal && c.Stamped:
		return c, ErrImportedLocal
	case m.Entry == EntryLocal && strings.HasPrefix(m.Reply, importReplyPrefix):
		return c, fmt.Errorf("authz: a request that crossed a service import carries no %s stamp", HeaderRequestInfo)
	}
	return c, nil
}

// ErrImportedLocal is Read's error for a stamped message on a subject of
// the nodes' own account: that account exports rpc or cancel, where it
// should export ext.rpc and ext.cancel (docs/SECURITY.md).
var ErrImportedLocal = errors.New("authz: a request from another NATS account on a subject of the nodes' own account; " +
	"export the ext.rpc and ext.cancel subjects to other accounts, never rpc or cancel (docs/SECURITY.md)")

// headerSize is the size of h written as a NATS header block: the version
// line, one "Key: value" line per value, the blank line. Every NATS client
// writes headers so, and nats-server adds its stamp so; a status line
// decodes into a Status and a Description header, which this counts as
// lines, more than the status line took.
func headerSize(h map[string][]string) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// stampMentions counts the occurrences of HeaderRequestInfo, in any case,
// in the keys and values of h. The status line nats.go splits into Status
// and Description is searched joined, as it was written.
func stampMentions(h map[string][]string) int {
	n := 0
	for k, vs := range h {
		n += countFold(k)
		for _, v := range vs {
			n += countFold(v)
		}
	}
	status, descr := h["Status"], h["Description"]
	if len(status) == 1 && len(descr) == 1 {
		joined := status[0] + descr[0]
		n += countFold(joined) - countFold(status[0]) - countFold(descr[0])
	}
	return n
}

// countFold counts the occurrences of stampNeedle in s, in any case.
func countFold(s string) int {
	n := 0
	for i := 0; i+len(stampNeedle) <= len(s); i++ {
		// Every request passes here: compare in place, without a lower-case
		// copy of the header.
		if s[i]|0x20 == stampNeedle[0] && strings.EqualFold(s[i:i+len(stampNeedle)], stampNeedle) {
			n++
			i += len(stampNeedle) - 1
		}
	}
	return n
}

// CallerFrom reads the caller from the values of the request's
// HeaderRequestInfo header (looked up with that exact key: nats-server
// replaces a header of exactly that name, not of another case). No value
// is a caller from the nodes' own account; more than one, a value that
// does not parse or one without an account is an error, and the request
// must be refused. Read, which also checks the rest of the header, is what
// a node uses.
func CallerFrom(values []string) (Caller, error) {
	switch len(values) {
	case 0:
		return Caller{}, nil
	case 1:
	default:
		return Caller{}, fmt.Errorf("authz: %d %s headers", len(values), HeaderRequestInfo)
	}
	if len(values[0]) > maxRequestInfo {
		return Caller{}, fmt.Errorf("authz: %s header of %d bytes", HeaderRequestInfo, len(values[0]))
	}
	var info struct {
		Account string `json:"acc"`
		User    string `json:"user"`
	}
	if err := json.Unmarshal([]byte(values[0]), &info); err != nil {
		return Caller{}, fmt.Errorf("authz: %s header: %w", HeaderRequestInfo, err)
	}
	if info.Account == "" {
		return Caller{}, fmt.Errorf("authz: %s header names no account", HeaderRequestInfo)
	}
	return Caller{Stamped: true, Account: info.Account, User: info.User}, nil
}

// Effect is what a policy does when no rule decides: allow or deny.
type Effect string

// The effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Rule grants a caller functions. Allow and Deny are globs in which "*"
// matches any run of characters; Deny beats Allow.
type Rule struct {
	Account string   `json:"account"`
	User    string   `json:"user,omitempty"`
	Allow   []string `json:"allow,omitempty"`
	Deny    []string `json:"deny,omitempty"`
}

// Policy says which caller may run which function. A nil *Policy allows
// everything.
type Policy struct {
	// Default judges stamped callers no rule matches. Default "deny".
	Default Effect `json:"default"`
	// Local judges requests from the nodes' own account. Default "allow".
	Local Effect `json:"local"`
	// Rules are tried in order; the first whose Account equals the
	// caller's, and whose User, when set, equals the caller's, decides.
	Rules []Rule `json:"rules"`
}

// Limits of a policy document.
const (
	maxPolicyBytes = 1 << 20
	maxRules       = 10000
	maxPatterns    = 10000
	maxIdentity    = 256
)

// Parse reads a policy document. It refuses unknown keys, values of the
// wrong type, a default or local other than "allow" or "deny", a rule
// without an account, and patterns that could match no function name; the
// error names the key.
func Parse(data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidPolicy, len(data), maxPolicyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the policy object", ErrInvalidPolicy)
	}
	if p.Default == "" {
		p.Default = Deny
	}
	if p.Local == "" {
		p.Local = Allow
	}
	for _, e := range []struct {
		key string
		v   Effect
	}{{"default", p.Default}, {"local", p.Local}} {
		if e.v != Allow && e.v != Deny {
			return nil, fmt.Errorf("%w: %q must be \"allow\" or \"deny\", not %s", ErrInvalidPolicy, e.key, schema.Clip(string(e.v)))
		}
	}
	if len(p.Rules) > maxRules {
		return nil, fmt.Errorf("%w: \"rules\": %d rules, more than %d", ErrInvalidPolicy, len(p.Rules), maxRules)
	}
	patterns := 0
	for i, r := range p.Rules {
		if err := checkRule(r, i); err != nil {
			return nil, err
		}
		patterns += len(r.Allow) + len(r.Deny)
	}
	if patterns > maxPatterns {
		return nil, fmt.Errorf("%w: %d patterns, more than %d", ErrInvalidPolicy, patterns, maxPatterns)
	}
	return &p, nil
}

func checkRule(r Rule, i int) error {
	if r.Account == "" || len(r.Account) > maxIdentity {
		return fmt.Errorf("%w: \"rules[%d].account\" must be 1 to %d bytes", ErrInvalidPolicy, i, maxIdentity)
	}
	if len(r.User) > maxIdentity {
		return fmt.Errorf("%w: \"rules[%d].user\" is longer than %d bytes", ErrInvalidPolicy, i, maxIdentity)
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow", r.Allow}, {"deny", r.Deny}} {
		for j, g := range l.list {
			if err := checkGlob(g); err != nil {
				return fmt.Errorf("%w: \"rules[%d].%s[%d]\": %w", ErrInvalidPolicy, i, l.key, j, err)
			}
		}
	}
	return nil
}

// checkGlob accepts a pattern that is a function name once each "*" is
// taken for one character.
func checkGlob(g string) error {
	if g == "" {
		return errors.New("an empty pattern")
	}
	if err := schema.CheckFunName(strings.ReplaceAll(g, "*", "x")); err != nil {
		return fmt.Errorf("not a function name pattern: %s", schema.AsError(err).Message)
	}
	return nil
}

// Load reads a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Allowed reports whether caller c may run function fun.
func (p *Policy) Allowed(c Caller, fun string) bool {
	if p == nil {
		return true
	}
	if !c.Stamped {
		return p.Local == Allow
	}
	for _, r := range p.Rules {
		if r.Account != c.Account || (r.User != "" && r.User != c.User) {
			continue
		}
		return !matchAny(r.Deny, fun) && matchAny(r.Allow, fun)
	}
	return p.Default == Allow
}

// Check returns nil when caller c may run every function of funs, and
// otherwise PERMISSION_DENIED naming the first function it may not run,
// the caller's account and user (details "fun", "account", "user").
func (p *Policy) Check(c Caller, funs []string) error {
	for _, f := range funs {
		if p.Allowed(c, f) {
			continue
		}
		who := "callers of the nodes' own account"
		if c.Stamped {
			who = "account " + schema.Clip(c.Account)
			if c.User != "" {
				who += " user " + schema.Clip(c.User)
			}
		}
		return &schema.Error{Code: schema.CodePermissionDenied,
			Message: fmt.Sprintf("%s may not run %s", who, f),
			Details: map[string]any{"fun": f, "account": c.Account, "user": c.User}}
	}
	return nil
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if Match(g, s) {
			return true
		}
	}
	return false
}

// Match reports whether s matches glob g, in which "*" matches any run of
// characters (none included) and every other character itself.
func Match(g, s string) bool {
	// The classic two-pointer walk: on a mismatch, let the last "*"
	// swallow one more character. Linear in len(g)·len(s) at worst.
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(g) && g[gi] == '*':
			star, mark = gi, si
			gi++
		case gi < len(g) && g[gi] == s[si]:
			gi++
			si++
		case star >= 0:
			gi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}
