package schema_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// helloWith is a hello offering f and g with retry set to retry.
func helloWith(retry string) string {
	return `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":{"f":[],"g":[]},"retry":` + retry + `}`
}

func TestParseHelloRetry(t *testing.T) {
	h, err := schema.ParseHello(decode(t, helloWith(`{
		"f": {"attempts": 5, "initial_backoff_ms": 100, "max_backoff_ms": 2000, "multiplier": 2, "jitter": 0.25},
		"g": {"attempts": 3, "initial_backoff_ms": 10, "multiplier": 1.5},
		"gone": {"attempts": 2},
		"once": {"attempts": 1, "initial_backoff_ms": 5}}`)))
	require.NoError(t, err)
	require.Equal(t, map[string]schema.RetryPolicy{
		"f": {Attempts: 5, InitialBackoffMS: 100, MaxBackoffMS: 2000, Multiplier: 2, Jitter: 0.25},
		"g": {Attempts: 3, InitialBackoffMS: 10, Multiplier: 1.5},
	}, h.Retry, "policies of functions not offered, and of one attempt, are left out")

	// attempts left out (or null) is one attempt: no policy.
	h, err = schema.ParseHello(decode(t, helloWith(`{"f": {"initial_backoff_ms": 5}, "g": {"attempts": null}}`)))
	require.NoError(t, err)
	require.Nil(t, h.Retry)
	h, err = schema.ParseHello(decode(t, helloWith(`null`)))
	require.NoError(t, err)
	require.Nil(t, h.Retry)

	// The MessagePack reader gives the same.
	tree := decode(t, helloWith(`{"f": {"attempts": 2, "multiplier": 3, "jitter": 1}}`))
	mp, err := codec.MsgPack.Encode(tree)
	require.NoError(t, err)
	got, _, err := codec.ReadSized(codec.MsgPack, mp, codec.MaxDecoded, schema.ReadHello)
	require.NoError(t, err)
	require.Equal(t, map[string]schema.RetryPolicy{"f": {Attempts: 2, Multiplier: 3, Jitter: 1}}, got.Retry)
}

func TestParseHelloRetryErrors(t *testing.T) {
	cases := []struct {
		name, retry, key, msg string
	}{
		{"a list", `[]`, "retry", "want map, got list"},
		{"policy a number", `{"f": 3}`, "retry.f", "want map, got number"},
		{"attempts 0", `{"f": {"attempts": 0}}`, "retry.f.attempts", "must be 1 to 100, got 0"},
		{"attempts 101", `{"f": {"attempts": 101}}`, "retry.f.attempts", "must be 1 to 100, got 101"},
		{"attempts a fraction", `{"f": {"attempts": 2.5}}`, "retry.f.attempts", "want integer"},
		{"attempts a string", `{"f": {"attempts": "2"}}`, "retry.f.attempts", "want integer, got string"},
		{"negative backoff", `{"f": {"attempts": 2, "initial_backoff_ms": -1}}`, "retry.f.initial_backoff_ms", "must be 0 to 86400000 ms"},
		{"backoff over a day", `{"f": {"attempts": 2, "initial_backoff_ms": 86400001}}`, "retry.f.initial_backoff_ms", "must be 0 to 86400000 ms"},
		{"max over a day", `{"f": {"attempts": 2, "max_backoff_ms": 86400001}}`, "retry.f.max_backoff_ms", "must be 0 to 86400000 ms"},
		{"max below initial", `{"f": {"attempts": 2, "initial_backoff_ms": 100, "max_backoff_ms": 50}}`, "retry.f.max_backoff_ms", "at least initial_backoff_ms (100)"},
		{"multiplier below 1", `{"f": {"attempts": 2, "multiplier": 0.5}}`, "retry.f.multiplier", "must be 1 to 100"},
		{"multiplier over 100", `{"f": {"attempts": 2, "multiplier": 101}}`, "retry.f.multiplier", "must be 1 to 100"},
		{"multiplier a string", `{"f": {"attempts": 2, "multiplier": "2"}}`, "retry.f.multiplier", "want number, got string"},
		{"negative jitter", `{"f": {"attempts": 2, "jitter": -0.1}}`, "retry.f.jitter", "must be 0 to 1"},
		{"jitter over 1", `{"f": {"attempts": 2, "jitter": 1.5}}`, "retry.f.jitter", "must be 0 to 1"},
		// A bad policy drops the hello even for a function it does not offer.
		{"bad policy of another function", `{"x": {"attempts": 1000}}`, "retry.x.attempts", "must be 1 to 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := schema.ParseHello(decode(t, helloWith(tc.retry)))
			require.Nil(t, h)
			requireInvalid(t, err, tc.key, tc.msg)
		})
	}

	// A name that cannot be a function's drops the hello, its error
	// quoting it clipped.
	_, err := schema.ParseHello(decode(t, helloWith(`{"`+strings.Repeat("a.", 1000)+`": {"attempts": 2}}`)))
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	require.Less(t, len(schema.AsError(err).Message), 300)

	// More than MaxFuns policies drop the hello.
	entries := make([]string, schema.MaxFuns+1)
	for i := range entries {
		entries[i] = fmt.Sprintf(`"f%d":{"attempts":2}`, i)
	}
	_, err = schema.ParseHello(decode(t, helloWith(`{`+strings.Join(entries, ",")+`}`)))
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	require.Equal(t, "retry", schema.AsError(err).Details.(map[string]any)["limit"])
}

func TestRetryPolicyBackoff(t *testing.T) {
	p := schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}
	require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond},
		[]time.Duration{p.Backoff(1), p.Backoff(2), p.Backoff(3), p.Backoff(4)})
	p.MaxBackoffMS = 300
	require.Equal(t, 300*time.Millisecond, p.Backoff(3), "capped at max_backoff_ms")
	p = schema.RetryPolicy{Attempts: 100, InitialBackoffMS: 1000, Multiplier: 100}
	require.Equal(t, time.Duration(schema.MaxBackoffMS)*time.Millisecond, p.Backoff(99), "capped at a day without max_backoff_ms")
	p = schema.RetryPolicy{Attempts: 3, InitialBackoffMS: 50}
	require.Equal(t, 50*time.Millisecond, p.Backoff(2), "multiplier 0 is 1")

	p.Jitter = 0.5
	require.Equal(t, 50*time.Millisecond, p.Jittered(100*time.Millisecond, 0))
	require.Equal(t, 100*time.Millisecond, p.Jittered(100*time.Millisecond, 0.5))
	require.InDelta(t, float64(150*time.Millisecond), float64(p.Jittered(100*time.Millisecond, 0.9999999)), float64(time.Microsecond))
	p.Jitter = 0
	require.Equal(t, 100*time.Millisecond, p.Jittered(100*time.Millisecond, 0.9))
}

func TestRetryPolicyCheck(t *testing.T) {
	require.Nil(t, schema.RetryPolicy{Attempts: 5, InitialBackoffMS: 100, Multiplier: 2}.Check("retry.f"))
	e := schema.RetryPolicy{Attempts: 2, Jitter: 2}.Check("retry.f")
	require.NotNil(t, e)
	require.Equal(t, map[string]any{"key": "retry.f.jitter"}, e.Details)
}

// A hello's retry goes through both codecs and back unchanged.
func TestHelloRetryRoundTrip(t *testing.T) {
	h := &schema.Hello{Cluster: "c", Node: "n", Incarnation: 1, Version: 1, Funs: map[string][]string{"f": {}},
		Retry: map[string]schema.RetryPolicy{"f": {Attempts: 5, InitialBackoffMS: 100, MaxBackoffMS: 1000, Multiplier: 2, Jitter: 0.1}}}
	for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
		b, err := c.Encode(h)
		require.NoError(t, err)
		got, _, err := codec.ReadSized(c, b, codec.MaxDecoded, schema.ReadHello)
		require.NoError(t, err)
		require.Equal(t, h.Retry, got.Retry, c.ContentType())
	}
	b, err := codec.JSON.Encode(h)
	require.NoError(t, err)
	require.Contains(t, string(b), `"retry":{"f":{"attempts":5,"initial_backoff_ms":100,"jitter":0.1,"max_backoff_ms":1000,"multiplier":2}}`)
}
