package schema_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// decode reads a JSON body into the value model, as a node does.
func decode(t testing.TB, body string) any {
	t.Helper()
	v, err := codec.JSON.Decode([]byte(body))
	require.NoError(t, err, body)
	return v
}

// requireInvalid checks that err is INVALID_REQUEST naming key in its
// message and in details.key.
func requireInvalid(t *testing.T, err error, key, msg string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
	var e *schema.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, schema.CodeInvalidRequest, e.Code)
	require.Contains(t, e.Message, key)
	require.Contains(t, e.Message, msg)
	require.Equal(t, map[string]any{"key": key}, e.Details)
}

// The request of docs/PROTOCOL.md §4.
const exampleRequest = `{
  "id": "r1",
  "cmds": [
    {"name": "|first",  "fun": "echo",  "args": ["hi there!"]},
    {"name": "|second", "fun": "echo",  "args": ["|first"]},
    {"name": "|third",  "fun": "echos", "args": ["|first", "AND ME TOO"],
     "kwargs": {}, "locs": ["dataset-a"]}
  ],
  "timeout_ms": 5000,
  "results": "sinks"
}`

func TestParseRequest(t *testing.T) {
	want := &schema.Request{
		ID: "r1",
		Cmds: []schema.Command{
			{Name: "|first", Fun: "echo", Args: []any{"hi there!"}},
			{Name: "|second", Fun: "echo", Args: []any{"|first"}},
			{Name: "|third", Fun: "echos", Args: []any{"|first", "AND ME TOO"}, Kwargs: map[string]any{}, Locs: []string{"dataset-a"}},
		},
		TimeoutMS: 5000,
		Results:   schema.ResultsSinks,
	}
	got, err := schema.ParseRequest(decode(t, exampleRequest))
	require.NoError(t, err)
	require.Equal(t, want, got)

	// The same body through MessagePack gives the same request.
	b, err := codec.MsgPack.Encode(decode(t, exampleRequest))
	require.NoError(t, err)
	v, err := codec.MsgPack.Decode(b)
	require.NoError(t, err)
	got, err = schema.ParseRequest(v)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestParseRequestDefaultsAndExtras(t *testing.T) {
	cases := map[string]struct {
		body string
		want *schema.Request
	}{
		"minimal": {`{"cmds":[{"name":"a","fun":"f"}]}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}, Results: schema.ResultsSinks}},
		"unknown keys ignored": {`{"future":1,"cmds":[{"name":"a","fun":"f","x":{"y":[]}}],"results":"all"}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}, Results: schema.ResultsAll}},
		"nulls are absent": {`{"id":null,"timeout_ms":null,"results":null,"cmds":[{"name":"a","fun":"f","args":null,"kwargs":null,"locs":null}]}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}, Results: schema.ResultsSinks}},
		"whole float timeout": {`{"timeout_ms":250.0,"cmds":[{"name":"a","fun":"f"}]}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}, TimeoutMS: 250, Results: schema.ResultsSinks}},
		"split results": {`{"split_results":true,"cmds":[{"name":"a","fun":"f"}]}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f"}}, Results: schema.ResultsSinks, SplitResults: true}},
		"ref args kept": {`{"cmds":[{"name":"a","fun":"f","args":[{"$ref":"b","path":"/0"}],"kwargs":{"k":"b"}}]}`,
			&schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "f",
				Args: []any{map[string]any{"$ref": "b", "path": "/0"}}, Kwargs: map[string]any{"k": "b"}}}, Results: schema.ResultsSinks}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := schema.ParseRequest(decode(t, tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		name, body, key, msg string
	}{
		{"not a map", `["cmds"]`, "request", "want map, got list"},
		{"missing cmds", `{"id":"x"}`, "cmds", "required key missing"},
		{"null cmds", `{"cmds":null}`, "cmds", "required key missing"},
		{"cmds not a list", `{"cmds":{"name":"a"}}`, "cmds", "want list, got map"},
		{"cmds a string", `{"cmds":"a"}`, "cmds", "want list, got string"},
		{"no commands", `{"cmds":[]}`, "cmds", "at least one command"},
		{"command not a map", `{"cmds":["a"]}`, "cmds[0]", "want map, got string"},
		{"args a string", `{"cmds":[{"name":"a","fun":"f"},{"name":"b","fun":"f","args":"x"}]}`, "cmds[1].args", "want list, got string"},
		{"kwargs a list", `{"cmds":[{"name":"a","fun":"f","kwargs":[]}]}`, "cmds[0].kwargs", "want map, got list"},
		{"missing name", `{"cmds":[{"fun":"f"}]}`, "cmds[0].name", "required key missing"},
		{"empty name", `{"cmds":[{"name":"","fun":"f"}]}`, "cmds[0].name", "must not be empty"},
		{"name a number", `{"cmds":[{"name":1,"fun":"f"}]}`, "cmds[0].name", "want string, got number"},
		{"missing fun", `{"cmds":[{"name":"a"}]}`, "cmds[0].fun", "required key missing"},
		{"fun with a dot", `{"cmds":[{"name":"a","fun":"a.b"}]}`, "cmds[0].fun", "must not hold '.'"},
		{"fun with a wildcard", `{"cmds":[{"name":"a","fun":"a*"}]}`, "cmds[0].fun", "must not hold '*'"},
		{"fun with a space", `{"cmds":[{"name":"a","fun":"a b"}]}`, "cmds[0].fun", "printable"},
		{"empty fun", `{"cmds":[{"name":"a","fun":""}]}`, "cmds[0].fun", "1 to 128 characters"},
		{"bad results mode", `{"cmds":[{"name":"a","fun":"f"}],"results":"some"}`, "results", `want "sinks" or "all", got "some"`},
		{"results a number", `{"cmds":[{"name":"a","fun":"f"}],"results":1}`, "results", "want string, got number"},
		{"negative timeout", `{"cmds":[{"name":"a","fun":"f"}],"timeout_ms":-1}`, "timeout_ms", "must not be negative"},
		{"fractional timeout", `{"cmds":[{"name":"a","fun":"f"}],"timeout_ms":1.5}`, "timeout_ms", "want integer, got number"},
		{"timeout a string", `{"cmds":[{"name":"a","fun":"f"}],"timeout_ms":"5s"}`, "timeout_ms", "want integer, got string"},
		{"id a number", `{"id":1,"cmds":[{"name":"a","fun":"f"}]}`, "id", "want string, got number"},
		{"locs a string", `{"cmds":[{"name":"a","fun":"f","locs":"gpu"}]}`, "cmds[0].locs", "want list of strings, got string"},
		{"locs[0] not a string", `{"cmds":[{"name":"a","fun":"f","locs":[1]}]}`, "cmds[0].locs[0]", "want string, got number"},
		{"loc with a space", `{"cmds":[{"name":"a","fun":"f","locs":["ok","a b"]}]}`, "cmds[0].locs[1]", "printable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := schema.ParseRequest(decode(t, tc.body))
			require.Nil(t, r)
			requireInvalid(t, err, tc.key, tc.msg)
		})
	}
}

// The hello of docs/PROTOCOL.md §7.
const exampleHello = `{"cluster": "default", "node": "n1-4KX2QZ", "incarnation": 1732570000123, "version": 3,
 "funs": {"echo": [], "echos": [], "predict": ["model-a", "gpu"]},
 "codecs": ["application/msgpack", "application/json"],
 "advertised_urls": ["nats://10.0.0.5:4222"],
 "meta": {"name": "worker one", "mpreg": "0.1.0"}, "proto": 1}`

func TestParseHello(t *testing.T) {
	h, err := schema.ParseHello(decode(t, exampleHello))
	require.NoError(t, err)
	require.Equal(t, "default", h.Cluster)
	require.Equal(t, "n1-4KX2QZ", h.Node)
	require.Equal(t, int64(1732570000123), h.Incarnation)
	require.Equal(t, int64(3), h.Version)
	require.Equal(t, map[string][]string{"echo": {}, "echos": {}, "predict": {"model-a", "gpu"}}, h.Funs)
	require.Equal(t, []string{"application/msgpack", "application/json"}, h.Codecs)
	require.Equal(t, []string{"nats://10.0.0.5:4222"}, h.AdvertisedURLs)
	require.Equal(t, map[string]string{"name": "worker one", "mpreg": "0.1.0"}, h.Meta)
	require.Equal(t, 1, h.Proto)

	// proto is optional and defaults to Proto; funs may be absent.
	h, err = schema.ParseHello(decode(t, `{"cluster":"c","node":"n","incarnation":1,"version":0,"meta":{"n":5}}`))
	require.NoError(t, err)
	require.Equal(t, schema.Proto, h.Proto)
	require.Empty(t, h.Funs)
	require.Equal(t, map[string]string{"n": "5"}, h.Meta)

	h, err = schema.ParseHello(decode(t, `{"cluster":"c","node":"n","incarnation":1,"version":0,"proto":2}`))
	require.NoError(t, err)
	require.Equal(t, 2, h.Proto)
}

func TestParseHelloErrors(t *testing.T) {
	cases := []struct {
		name, body, key, msg string
	}{
		{"not a map", `"hello"`, "hello", "want map, got string"},
		{"missing cluster", `{"node":"n","incarnation":1,"version":1}`, "cluster", "required key missing"},
		{"missing node", `{"cluster":"c","incarnation":1,"version":1}`, "node", "required key missing"},
		{"bad node id", `{"cluster":"c","node":"n.1","incarnation":1,"version":1}`, "node", "may hold only"},
		{"missing incarnation", `{"cluster":"c","node":"n","version":1}`, "incarnation", "required key missing"},
		{"incarnation a string", `{"cluster":"c","node":"n","incarnation":"1","version":1}`, "incarnation", "want integer, got string"},
		{"missing version", `{"cluster":"c","node":"n","incarnation":1}`, "version", "required key missing"},
		{"proto a string", `{"cluster":"c","node":"n","incarnation":1,"version":1,"proto":"1"}`, "proto", "want integer"},
		{"funs a list", `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":[]}`, "funs", "want map, got list"},
		{"fun locs a string", `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":{"f":"gpu"}}`, "funs.f", "want list of strings"},
		{"codecs[1] not a string", `{"cluster":"c","node":"n","incarnation":1,"version":1,"codecs":["a",1]}`, "codecs[1]", "want string, got number"},
		{"urls a map", `{"cluster":"c","node":"n","incarnation":1,"version":1,"advertised_urls":{}}`, "advertised_urls", "want list of strings, got map"},
		{"meta a list", `{"cluster":"c","node":"n","incarnation":1,"version":1,"meta":[]}`, "meta", "want map, got list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := schema.ParseHello(decode(t, tc.body))
			require.Nil(t, h)
			requireInvalid(t, err, tc.key, tc.msg)
		})
	}
}

func TestParseHeartbeat(t *testing.T) {
	h, err := schema.ParseHeartbeat(decode(t, `{"cluster":"default","node":"n1","incarnation":7,"version":3,"seq":42,"load":{"inflight":2,"limit":64},"x":1}`))
	require.NoError(t, err)
	require.Equal(t, &schema.Heartbeat{Cluster: "default", Node: "n1", Incarnation: 7, Version: 3, Seq: 42,
		Load: schema.Load{Inflight: 2, Limit: 64}}, h)

	h, err = schema.ParseHeartbeat(decode(t, `{"cluster":"c","node":"n","incarnation":1,"version":1}`))
	require.NoError(t, err)
	require.Equal(t, schema.Load{}, h.Load)

	cases := []struct{ name, body, key, msg string }{
		{"not a map", `[]`, "heartbeat", "want map, got list"},
		{"missing node", `{"cluster":"c","incarnation":1,"version":1}`, "node", "required key missing"},
		{"missing version", `{"cluster":"c","node":"n","incarnation":1}`, "version", "required key missing"},
		{"seq a float", `{"cluster":"c","node":"n","incarnation":1,"version":1,"seq":0.5}`, "seq", "want integer"},
		{"load a list", `{"cluster":"c","node":"n","incarnation":1,"version":1,"load":[]}`, "load", "want map, got list"},
		{"inflight a string", `{"cluster":"c","node":"n","incarnation":1,"version":1,"load":{"inflight":"2"}}`, "load.inflight", "want integer, got string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.ParseHeartbeat(decode(t, tc.body))
			requireInvalid(t, err, tc.key, tc.msg)
		})
	}
}

func TestParseGoodbye(t *testing.T) {
	g, err := schema.ParseGoodbye(decode(t, `{"cluster":"default","node":"n1","incarnation":9}`))
	require.NoError(t, err)
	require.Equal(t, &schema.Goodbye{Cluster: "default", Node: "n1", Incarnation: 9}, g)

	_, err = schema.ParseGoodbye(decode(t, `{"cluster":"default","node":"n1"}`))
	requireInvalid(t, err, "incarnation", "required key missing")
	_, err = schema.ParseGoodbye(decode(t, `{"cluster":"default","incarnation":1}`))
	requireInvalid(t, err, "node", "required key missing")
	_, err = schema.ParseGoodbye(decode(t, `null`))
	requireInvalid(t, err, "goodbye", "want map, got null")
}

func TestParsePlannerAck(t *testing.T) {
	a, err := schema.ParsePlannerAck(decode(t, `{"cluster":"default","id":"r1","planner":"n1","incarnation":9,"extra":1}`))
	require.NoError(t, err)
	require.Equal(t, &schema.PlannerAck{Cluster: "default", ID: "r1", Planner: "n1", Incarnation: 9}, a)

	_, err = schema.ParsePlannerAck(decode(t, `{"cluster":"default","id":"r1","incarnation":9}`))
	requireInvalid(t, err, "planner", "required key missing")
	_, err = schema.ParsePlannerAck(decode(t, `{"cluster":"default","planner":"n1","incarnation":"9"}`))
	requireInvalid(t, err, "incarnation", "want integer, got string")
	_, err = schema.ParsePlannerAck(decode(t, `[]`))
	requireInvalid(t, err, "planner ack", "want map, got list")
}

func TestParseExecRequest(t *testing.T) {
	r, err := schema.ParseExecRequest(decode(t, `{"cluster":"default","id":"r1/|first","fun":"echo","args":["hi",1],"kwargs":{"k":true},"deadline_ms":1732570005123}`))
	require.NoError(t, err)
	require.Equal(t, &schema.ExecRequest{Cluster: "default", ID: "r1/|first", Fun: "echo",
		Args: []any{"hi", int64(1)}, Kwargs: map[string]any{"k": true}, DeadlineMS: 1732570005123}, r)

	r, err = schema.ParseExecRequest(decode(t, `{"cluster":"c","fun":"f"}`))
	require.NoError(t, err)
	require.Equal(t, &schema.ExecRequest{Cluster: "c", Fun: "f"}, r)

	cases := []struct{ name, body, key, msg string }{
		{"not a map", `1`, "exec", "want map, got number"},
		{"missing cluster", `{"fun":"f"}`, "cluster", "required key missing"},
		{"missing fun", `{"cluster":"c"}`, "fun", "required key missing"},
		{"args a map", `{"cluster":"c","fun":"f","args":{}}`, "args", "want list, got map"},
		{"kwargs a string", `{"cluster":"c","fun":"f","kwargs":"x"}`, "kwargs", "want map, got string"},
		{"deadline a string", `{"cluster":"c","fun":"f","deadline_ms":"soon"}`, "deadline_ms", "want integer, got string"},
		{"id a list", `{"cluster":"c","fun":"f","id":[]}`, "id", "want string, got list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.ParseExecRequest(decode(t, tc.body))
			requireInvalid(t, err, tc.key, tc.msg)
		})
	}
}

func TestParseExecReply(t *testing.T) {
	// A null result is a result, distinct from a missing one.
	r, err := schema.ParseExecReply(decode(t, `{"result":null}`))
	require.NoError(t, err)
	require.Equal(t, &schema.ExecReply{}, r)
	b, err := codec.JSON.Encode(r.Encodable())
	require.NoError(t, err)
	require.JSONEq(t, `{"result":null}`, string(b), "the result key is present when null")

	_, err = schema.ParseExecReply(decode(t, `{}`))
	requireInvalid(t, err, "result", "required key missing")

	r, err = schema.ParseExecReply(decode(t, `{"result":["hi",1,{"a":1.5}]}`))
	require.NoError(t, err)
	require.Equal(t, []any{"hi", int64(1), map[string]any{"a": 1.5}}, r.Result)

	r, err = schema.ParseExecReply(decode(t, `{"error":null,"result":false}`))
	require.NoError(t, err)
	require.Equal(t, false, r.Result)
	require.Nil(t, r.Error)

	r, err = schema.ParseExecReply(decode(t, `{"error":{"code":"FUNCTION_ERROR","message":"boom","details":{"n":1}}}`))
	require.NoError(t, err)
	require.Nil(t, r.Result)
	require.Equal(t, &schema.Error{Code: schema.CodeFunctionError, Message: "boom", Details: map[string]any{"n": int64(1)}}, r.Error)
	require.ErrorIs(t, r.Error, schema.ErrFunctionError)
	b, err = codec.JSON.Encode(r.Encodable())
	require.NoError(t, err)
	require.JSONEq(t, `{"error":{"code":"FUNCTION_ERROR","message":"boom","details":{"n":1}}}`, string(b))

	_, err = schema.ParseExecReply(decode(t, `{"error":{"message":"no code"}}`))
	requireInvalid(t, err, "error.code", "required key missing")
	_, err = schema.ParseExecReply(decode(t, `{"error":"boom"}`))
	requireInvalid(t, err, "error", "want map, got string")
	_, err = schema.ParseExecReply(decode(t, `{"error":{"code":"X","step":1}}`))
	requireInvalid(t, err, "error.step", "want string, got number")
	_, err = schema.ParseExecReply(decode(t, `[]`))
	requireInvalid(t, err, "reply", "want map, got list")
}

func TestParseResponse(t *testing.T) {
	body := `{"id": "r1", "error": {"code": "NO_ROUTE", "message": "no live node offers echo with locs [gpu]",
                        "step": "|third", "node": "", "details": {"fun": "echo", "locs": ["gpu"]}},
 "results": {"|first": "hi there!"}}`
	r, err := schema.ParseResponse(decode(t, body))
	require.NoError(t, err)
	require.Equal(t, &schema.Response{
		ID:      "r1",
		Results: map[string]any{"|first": "hi there!"},
		Error: &schema.Error{Code: schema.CodeNoRoute, Message: "no live node offers echo with locs [gpu]",
			Step: "|third", Details: map[string]any{"fun": "echo", "locs": []any{"gpu"}}},
	}, r)

	_, err = schema.ParseResponse(decode(t, `{"id":"r1","results":[]}`))
	requireInvalid(t, err, "results", "want map, got list")

	r, err = schema.ParseResponse(decode(t, `{"id":"r1","results":{},"trace":[],"trace_truncated":true}`))
	require.NoError(t, err)
	require.True(t, r.TraceTruncated)
	_, err = schema.ParseResponse(decode(t, `{"id":"r1","results":{},"trace_truncated":1}`))
	requireInvalid(t, err, "trace_truncated", "want boolean, got number")
}

func TestCheckNames(t *testing.T) {
	require.Nil(t, schema.CheckID("n1-4KX2QZ_a"))
	for _, bad := range []string{"", "a.b", "a b", "é", string(make([]byte, 65))} {
		require.NotNil(t, schema.CheckID(bad), "%q", bad)
	}
	require.Nil(t, schema.CheckFunName("echo|2:π"))
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", "a\x00", "\xff"} {
		require.NotNil(t, schema.CheckFunName(bad), "%q", bad)
	}
	require.Nil(t, schema.CheckLoc("dataset-a.v2"))
	require.NotNil(t, schema.CheckLoc("a\tb"))
}

// Every string of a message read from the network is bounded before it is
// logged or built into a subject: a 4,100-byte node id once made every
// node of a cluster publish on a subject the NATS server refused, which
// closed their connections.
func TestParseBoundsHostileStrings(t *testing.T) {
	long := strings.Repeat("z", 4100)
	q := func(s string) string { return `"` + s + `"` }
	cases := []struct {
		name  string
		parse func(any) (any, error)
		body  string
		key   string
	}{
		{"heartbeat node", heartbeat, `{"cluster":"c","node":` + q(long) + `,"incarnation":1,"version":1}`, "node"},
		{"heartbeat node with a dot", heartbeat, `{"cluster":"c","node":"a.b","incarnation":1,"version":1}`, "node"},
		{"heartbeat node a wildcard", heartbeat, `{"cluster":"c","node":">","incarnation":1,"version":1}`, "node"},
		{"heartbeat cluster", heartbeat, `{"cluster":` + q(long) + `,"node":"n","incarnation":1,"version":1}`, "cluster"},
		{"heartbeat incarnation 0", heartbeat, `{"cluster":"c","node":"n","incarnation":0,"version":1}`, "incarnation"},
		{"heartbeat incarnation 2^53", heartbeat, `{"cluster":"c","node":"n","incarnation":9007199254740992,"version":1}`, "incarnation"},
		{"heartbeat version negative", heartbeat, `{"cluster":"c","node":"n","incarnation":1,"version":-1}`, "version"},
		{"goodbye node", goodbye, `{"cluster":"c","node":` + q(long) + `,"incarnation":1}`, "node"},
		{"goodbye node with a space", goodbye, `{"cluster":"c","node":"a b","incarnation":1}`, "node"},
		{"hello cluster", hello, `{"cluster":"a*","node":"n","incarnation":1,"version":1}`, "cluster"},
		{"hello fun name", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":{"a.b":[]}}`, "funs"},
		{"hello loc", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":{"f":["a b"]}}`, "funs.f"},
		{"hello meta value", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"meta":{"k":` + q(long) + `}}`, "meta.k"},
		{"hello meta list", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"meta":{"k":[1]}}`, "meta.k"},
		{"hello codec", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"codecs":[` + q(long) + `]}`, "codecs[0]"},
		{"hello url", hello, `{"cluster":"c","node":"n","incarnation":1,"version":1,"advertised_urls":[` + q(long) + `]}`, "advertised_urls[0]"},
		{"exec cluster", execReq, `{"cluster":` + q(long) + `,"fun":"f"}`, "cluster"},
		{"exec fun", execReq, `{"cluster":"c","fun":` + q(long) + `}`, "fun"},
		{"exec attempt", execReq, `{"cluster":"c","fun":"f","attempt":` + q(long) + `}`, "attempt"},
		{"exec id", execReq, `{"cluster":"c","fun":"f","id":` + q(long) + `}`, "id"},
		{"cancel cluster", cancel, `{"cluster":"c.d","id":"x"}`, "cluster"},
		{"cancel id", cancel, `{"cluster":"c","id":` + q(long) + `}`, "id"},
		{"planner ack planner", ack, `{"cluster":"c","planner":` + q(long) + `,"incarnation":1}`, "planner"},
		{"request id", request, `{"id":` + q(long) + `,"cmds":[{"name":"a","fun":"f"}]}`, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.parse(decode(t, tc.body))
			require.ErrorIs(t, err, schema.ErrInvalidRequest)
			var e *schema.Error
			require.ErrorAs(t, err, &e)
			require.True(t, strings.HasPrefix(e.Message, tc.key+":"), "message %q names %q", e.Message, tc.key)
			require.Less(t, len(e.Message), 300, "the message quotes a clipped value")
		})
	}

	// Many servers in a hello's advertised_urls are cut to MaxURLs, not
	// refused; more functions than MaxFuns are refused.
	urls := make([]string, 40)
	for i := range urls {
		urls[i] = q(fmt.Sprintf("nats://10.0.0.%d:4222", i))
	}
	h, err := schema.ParseHello(decode(t, `{"cluster":"c","node":"n","incarnation":1,"version":1,"advertised_urls":[`+strings.Join(urls, ",")+`]}`))
	require.NoError(t, err)
	require.Len(t, h.AdvertisedURLs, schema.MaxURLs)
	funs := make([]string, schema.MaxFuns+1)
	for i := range funs {
		funs[i] = fmt.Sprintf(`"f%d":[]`, i)
	}
	_, err = schema.ParseHello(decode(t, `{"cluster":"c","node":"n","incarnation":1,"version":1,"funs":{`+strings.Join(funs, ",")+`}}`))
	require.ErrorIs(t, err, schema.ErrInvalidRequest)
}

func heartbeat(v any) (any, error) { return schema.ParseHeartbeat(v) }
func goodbye(v any) (any, error)   { return schema.ParseGoodbye(v) }
func hello(v any) (any, error)     { return schema.ParseHello(v) }
func execReq(v any) (any, error)   { return schema.ParseExecRequest(v) }
func cancel(v any) (any, error)    { return schema.ParseCancel(v) }
func ack(v any) (any, error)       { return schema.ParsePlannerAck(v) }
func request(v any) (any, error)   { return schema.ParseRequest(v) }

func TestClip(t *testing.T) {
	require.Equal(t, `"short"`, schema.Clip("short"))
	c := schema.Clip(strings.Repeat("é", 100))
	require.True(t, strings.HasSuffix(c, "…(200 bytes)"), c)
	require.True(t, utf8.ValidString(c))
}
