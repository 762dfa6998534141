package authz_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/schema"
)

const example = `{
  "default": "deny",
  "local": "allow",
  "rules": [
    {"account": "APP", "user": "alice", "allow": ["add", "upper"]},
    {"account": "APP", "allow": ["echo", "whoami"]},
    {"account": "OPS", "allow": ["*"], "deny": ["panic"]}
  ]
}`

func caller(acc, user string) authz.Caller {
	return authz.Caller{Stamped: true, Account: acc, User: user}
}

func TestPolicyDecisions(t *testing.T) {
	p, err := authz.Parse([]byte(example))
	require.NoError(t, err)
	for _, tc := range []struct {
		c    authz.Caller
		fun  string
		want bool
	}{
		{caller("APP", "alice"), "add", true},
		{caller("APP", "alice"), "upper", true},
		{caller("APP", "alice"), "echo", false}, // alice's own rule decides: the account's rule is not reached
		{caller("APP", "bob"), "echo", true},
		{caller("APP", "bob"), "add", false},
		{caller("APP", ""), "whoami", true},
		{caller("OPS", "eve"), "add", true},
		{caller("OPS", "eve"), "panic", false},   // deny beats allow
		{caller("OTHER", "alice"), "add", false}, // no rule: default
		{authz.Caller{}, "panic", true},          // local
		{caller("app", "alice"), "add", false},   // accounts compare exactly
	} {
		require.Equal(t, tc.want, p.Allowed(tc.c, tc.fun), "%+v %s", tc.c, tc.fun)
	}
	var nilPolicy *authz.Policy
	require.True(t, nilPolicy.Allowed(caller("X", "y"), "anything"), "no policy allows everything")

	open, err := authz.Parse([]byte(`{"default": "allow", "local": "deny"}`))
	require.NoError(t, err)
	require.True(t, open.Allowed(caller("X", ""), "f"))
	require.False(t, open.Allowed(authz.Caller{}, "f"))

	defaults, err := authz.Parse([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, authz.Deny, defaults.Default)
	require.Equal(t, authz.Allow, defaults.Local)
}

func TestPolicyCheck(t *testing.T) {
	p, err := authz.Parse([]byte(example))
	require.NoError(t, err)
	require.NoError(t, p.Check(caller("APP", "alice"), []string{"add", "upper", "add"}))
	err = p.Check(caller("APP", "alice"), []string{"add", "panic", "echo"})
	require.ErrorIs(t, err, schema.ErrPermissionDenied)
	var se *schema.Error
	require.True(t, errors.As(err, &se))
	require.Equal(t, map[string]any{"fun": "panic", "account": "APP", "user": "alice"}, se.Details)
	require.Equal(t, `account "APP" user "alice" may not run panic`, se.Message)
}

func TestPolicyRefused(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"default": "deny", "lokal": "allow"}`, `unknown field "lokal"`},
		{`{"rules": [{"account": "A", "allow": ["x"], "allwo": ["y"]}]}`, `unknown field "allwo"`},
		{`{"default": "maybe"}`, `"default" must be "allow" or "deny"`},
		{`{"local": "DENY"}`, `"local" must be "allow" or "deny"`},
		{`{"rules": [{"allow": ["x"]}]}`, `"rules[0].account"`},
		{`{"rules": [{"account": "A", "allow": ["ok", "a.b"]}]}`, `"rules[0].allow[1]"`},
		{`{"rules": [{"account": "A", "deny": [""]}]}`, `"rules[0].deny[0]": an empty pattern`},
		{`{"rules": [{"account": "A", "deny": ["a b"]}]}`, `"rules[0].deny[0]"`},
		{`{"rules": [{"account": "A", "allow": [">"]}]}`, `"rules[0].allow[0]"`},
		{`{"rules": {"account": "A"}}`, `rules`},
		{`{"default": "deny"} {}`, `data after the policy object`},
		{`[]`, `cannot unmarshal`},
		{``, `EOF`},
	} {
		_, err := authz.Parse([]byte(tc.doc))
		require.ErrorIs(t, err, authz.ErrInvalidPolicy, tc.doc)
		require.Contains(t, err.Error(), tc.want, tc.doc)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		g, s string
		want bool
	}{
		{"*", "", true}, {"*", "anything", true}, {"add", "add", true}, {"add", "addx", false},
		{"a*", "a", true}, {"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "abbbc", true},
		{"a*c", "abcd", false}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxcyyb", false},
		{"**", "x", true}, {"user.*", "user.x", true}, {"?", "a", false}, {"[a]", "a", false},
		{"é*", "été", true}, {"*é", "été", true},
	} {
		require.Equal(t, tc.want, authz.Match(tc.g, tc.s), "%q %q", tc.g, tc.s)
	}
}

func TestCallerFrom(t *testing.T) {
	c, err := authz.CallerFrom(nil)
	require.NoError(t, err)
	require.Equal(t, authz.Caller{}, c)
	require.Empty(t, c.Key())

	c, err = authz.CallerFrom([]string{`{"acc":"APP","user":"bob","rtt":1000,"name":"x"}`})
	require.NoError(t, err)
	require.Equal(t, caller("APP", "bob"), c)
	require.NotEqual(t, caller("APP", "bob").Key(), caller("APP", "alice").Key())
	require.NotEqual(t, caller("AP", "Pbob").Key(), c.Key())

	for _, bad := range [][]string{
		{`{"acc":"APP"}`, `{"acc":"APP"}`},
		{`not json`},
		{`{"user":"bob"}`},
		{`{"acc":"APP","user":` + strings.Repeat(" ", 70000) + `"x"}`},
	} {
		_, err := authz.CallerFrom(bad)
		require.Error(t, err)
	}
}

// FuzzParse: any document either is refused or gives a policy that reads
// back the same, whose decisions never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(example), "APP", "alice", "add")
	f.Add([]byte(`{"default":"allow","rules":[{"account":"A","deny":["*x*"]}]}`), "A", "", "axb")
	f.Add([]byte(`{"rules":[{"account":"A","user":"u","allow":["a*b*c"]}]}`), "A", "u", "abc")
	f.Fuzz(func(t *testing.T, doc []byte, acc, user, fun string) {
		p, err := authz.Parse(doc)
		if err != nil {
			require.ErrorIs(t, err, authz.ErrInvalidPolicy)
			return
		}
		again, err := json.Marshal(p)
		require.NoError(t, err)
		q, err := authz.Parse(again)
		require.NoError(t, err, "%s", again)
		c := caller(acc, user)
		require.Equal(t, p.Allowed(c, fun), q.Allowed(c, fun))
		_ = p.Check(c, []string{fun})
	})
}

// FuzzMatch checks Match against a regular expression built from the glob.
func FuzzMatch(f *testing.F) {
	f.Add("a*b", "axxb")
	f.Add("*", "")
	f.Add("**a*", "baab")
	f.Fuzz(func(t *testing.T, g, s string) {
		if len(g) > 64 || len(s) > 256 || !utf8.ValidString(g) || !utf8.ValidString(s) {
			return // the regexp reads runes, Match bytes
		}
		parts := strings.Split(g, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
		want := re.MatchString(s)
		require.Equal(t, want, authz.Match(g, s), "%q %q", g, s)
	})
}

// BenchmarkAuthorize is what a planner adds to a stamped request with a
// policy: reading the stamp and checking a three-command request.
func BenchmarkAuthorize(b *testing.B) {
	p, err := authz.Parse([]byte(example))
	require.NoError(b, err)
	stamp := []string{`{"start":"2026-11-29T17:20:01.608002746Z","host":"127.0.0.1","id":8,"acc":"APP","user":"alice","lang":"go","ver":"1.55.0","rtt":87321,"server":"NBKFALDYVSJHDDEKRJODTCULPZL4NKSZVBHH65KDXKTWQZJOTKP4ZIUF","kind":"Client","client_type":"nats"}`}
	funs := []string{"add", "upper", "add"}
	b.ReportAllocs()
	for b.Loop() {
		c, err := authz.CallerFrom(stamp)
		if err != nil || p.Check(c, funs) != nil {
			b.Fatal("refused")
		}
	}
}

// TestReadAllocations: reading a stamped caller costs the stamp's JSON
// decoding and nothing per header line.
func TestReadAllocations(t *testing.T) {
	h := map[string][]string{"Content-Type": {"application/json"}, "Accept": {"application/json"},
		authz.HeaderRequestInfo: {`{"acc":"APP","user":"bob","server":"NBKFALDYVSJHDDEKRJODTCULPZL4NKSZ"}`}}
	size := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		size += len(k) + len(": ") + len(vs[0]) + len("\r\n")
	}
	m := authz.Msg{Header: h, HeaderBytes: size, Entry: authz.EntryImport}
	c, err := authz.Read(m)
	require.NoError(t, err)
	require.Equal(t, caller("APP", "bob"), c)
	stampOnly := testing.AllocsPerRun(100, func() { _, _ = authz.CallerFrom(h[authz.HeaderRequestInfo]) })
	require.Equal(t, stampOnly, testing.AllocsPerRun(100, func() { _, _ = authz.Read(m) }))
}
