package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// secureConf is examples/secure/nats.conf: the nodes in account MPREG,
// the callers alice and bob in account APP, which reaches the nodes only
// through service imports of the ext subjects, with share: true, and each
// caller confined to publishing on those and subscribing on its own inbox
// prefix.
func secureConf(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../examples/secure/nats.conf")
	require.NoError(t, err)
	// mallory is in APP without permissions of her own: what she reaches
	// is what the accounts let through.
	conf := strings.Replace(string(b), "users: [\n      {user: alice", "users: [\n      {user: mallory, password: \"mallory-secret\"}\n      {user: alice", 1)
	require.NotEqual(t, string(b), conf)
	return conf
}

// The example's passwords and inbox prefixes.
const (
	alicePass, bobPass, nodePass = "alice-secret", "bob-secret", "node-secret"
	aliceInbox, bobInbox         = "_INBOX_alice", "_INBOX_bob"
)

const testPolicy = `{
  "default": "deny",
  "local": "allow",
  "rules": [
    {"account": "APP", "user": "alice", "allow": ["add", "slow", "whoami"]},
    {"account": "APP", "allow": ["whoami"]}
  ]
}`

// TestAuthzNATSPermissions: a caller whose NATS user may publish only on
// the imported subjects and subscribe only on its own inbox prefix is
// refused by NATS itself on any other subject, cannot read another
// caller's traffic, and still calls, following or not.
func TestAuthzNATSPermissions(t *testing.T) {
	f := newAuthzFixture(t)
	for _, follow := range []bool{true, false} {
		alice := f.client(t, "alice", follow)
		v, err := alice.Call(context.Background(), "whoami", nil)
		require.NoError(t, err)
		require.Equal(t, "n1", v)
	}

	errs := make(chan error, 8)
	nc := testcluster.Conn(t, f.url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{f.url},
		Auth:    bus.Auth{User: "alice", Password: alicePass},
		Options: []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })}}))
	require.NoError(t, nc.Publish(execSubject("n1"), []byte(`{"cluster": "default", "id": "x", "fun": "panic", "args": []}`)))
	err := testwait.Recv(t, errs, "NATS to refuse the publish")
	require.ErrorIs(t, err, nats.ErrPermissionViolation)
	require.Contains(t, err.Error(), execSubject("n1"))
	for _, subject := range []string{">", bobInbox + ".>", "_INBOX.>", "mpreg.>"} {
		_, err := nc.SubscribeSync(subject)
		require.NoError(t, err)
		err = testwait.Recv(t, errs, "NATS to refuse the subscription to "+subject)
		require.ErrorIs(t, err, nats.ErrPermissionViolation, subject)
	}
	require.Zero(t, f.calls.Load())
}

// authzFixture is a node in MPREG with counting functions, and a way to
// dial as anyone.
type authzFixture struct {
	url   string
	node  *node.Node
	calls atomic.Int64 // calls of add and panic
	slow  *blocker
}

func newAuthzFixture(t *testing.T) *authzFixture {
	t.Helper()
	srv := testsecure.Server(t, secureConf(t))
	f := &authzFixture{url: srv.ClientURL(), slow: newBlocker()}
	t.Cleanup(f.slow.Release)
	p, err := authz.Parse([]byte(testPolicy))
	require.NoError(t, err)
	cfg := testcluster.NodeConfig(t, "n1")
	cfg.Authz = p
	nc := f.dial(t, "node")
	f.node = testcluster.StartNode(t, nc, cfg, func(n *node.Node) {
		require.NoError(t, n.Register("add", func(a, b int64) int64 { f.calls.Add(1); return a + b }))
		require.NoError(t, n.Register("panic", func() string { f.calls.Add(1); panic("should never run") }))
		require.NoError(t, n.Register("slow", f.slow.Fn))
		require.NoError(t, n.Register("whoami", whoami("n1")))
	})
	return f
}

// dial connects as one of the example's users, under the user's own inbox
// prefix.
func (f *authzFixture) dial(t *testing.T, user string) *nats.Conn {
	t.Helper()
	return testcluster.Conn(t, f.url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{f.url},
		Auth: bus.Auth{User: user, Password: passwords[user]}, Options: inboxOption(user)}))
}

func (f *authzFixture) client(t *testing.T, user string, follow bool) *client.Client {
	t.Helper()
	return testcluster.Client(t, f.url, client.Config{
		Dial: bus.ConnConfig{Auth: bus.Auth{User: user, Password: passwords[user]}, Options: inboxOption(user)}, NoFollow: !follow})
}

var passwords = map[string]string{"alice": alicePass, "bob": bobPass, "node": nodePass, "mallory": "mallory-secret"}

// inboxOption is the inbox prefix the example lets user subscribe on.
func inboxOption(user string) []nats.Option {
	switch user {
	case "alice":
		return []nats.Option{nats.CustomInboxPrefix(aliceInbox)}
	case "bob":
		return []nats.Option{nats.CustomInboxPrefix(bobInbox)}
	}
	return nil
}

func TestAuthzPerFunction(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	alice := f.client(t, "alice", true) // following: it sees no gossip from APP, and goes by rpc
	bob := f.client(t, "bob", false)

	v, err := alice.Call(ctx, "add", []any{2, 3})
	require.NoError(t, err)
	require.EqualValues(t, 5, v)
	require.EqualValues(t, 1, f.calls.Load())

	_, err = alice.Call(ctx, "panic", nil)
	e := requireCode(t, err, schema.CodePermissionDenied)
	require.Equal(t, map[string]any{"fun": "panic", "account": "APP", "user": "alice"}, e.Details)

	_, err = bob.Call(ctx, "add", []any{2, 3})
	e = requireCode(t, err, schema.CodePermissionDenied)
	require.Equal(t, map[string]any{"fun": "add", "account": "APP", "user": "bob"}, e.Details)
	v, err = bob.Call(ctx, "whoami", nil)
	require.NoError(t, err)
	require.Equal(t, "n1", v)

	// A streamed response crosses the import (the export's response_type
	// is stream): planned, a step event, then the result.
	var kinds []string
	resp0, err := alice.RunWithEvents(ctx, &schema.Request{Progress: true, Cmds: []schema.Command{{Name: "s", Fun: "add", Args: []any{1, 1}}}},
		func(ev client.Event) { kinds = append(kinds, ev.Kind) })
	require.NoError(t, err)
	require.EqualValues(t, 2, resp0.Results["s"])
	require.Equal(t, []string{schema.EventPlanned, schema.EventStep}, kinds)
	require.EqualValues(t, 2, f.calls.Load())

	// One denied step in a graph: nothing of it runs.
	resp, err := alice.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "a", Fun: "add", Args: []any{1, 2}},
		{Name: "b", Fun: "add", Args: []any{"a", 10}},
		{Name: "c", Fun: "panic", Args: []any{}},
	}})
	requireCode(t, err, schema.CodePermissionDenied)
	require.Empty(t, resp.Results)
	require.EqualValues(t, 2, f.calls.Load(), "no step of a refused request runs")

	// The nodes' own account is judged by "local": allowed here.
	local := f.client(t, "node", false)
	_, err = local.Call(ctx, "panic", nil)
	requireCode(t, err, schema.CodeFunctionPanic)
	require.EqualValues(t, 3, f.calls.Load())

	// A new policy takes effect for the next request.
	p, err := authz.Parse([]byte(`{"rules": [{"account": "APP", "allow": ["add"]}]}`))
	require.NoError(t, err)
	f.node.SetAuthz(p)
	v, err = bob.Call(ctx, "add", []any{1, 1})
	require.NoError(t, err)
	require.EqualValues(t, 2, v)
	f.node.SetAuthz(nil)
	_, err = bob.Call(ctx, "panic", nil)
	requireCode(t, err, schema.CodeFunctionPanic)
}

// TestAuthzForgedIdentity: bob sends a Nats-Request-Info header claiming
// to be alice, in the ways a header can be smuggled; NATS replaces it, or
// the node does not read it, and bob is still bob.
func TestAuthzForgedIdentity(t *testing.T) {
	f := newAuthzFixture(t)
	bob := f.dial(t, "bob")
	forged := `{"acc":"APP","user":"alice"}`
	body := []byte(`{"id": "forged", "cmds": [{"name": "x", "fun": "add", "args": [1, 2]}]}`)
	for name, h := range map[string]nats.Header{
		"exact":      {"Nats-Request-Info": {forged}},
		"twice":      {"Nats-Request-Info": {forged, forged}},
		"lower case": {"nats-request-info": {forged}},
		"upper case": {"NATS-REQUEST-INFO": {forged}},
		"decoy":      {"X-Decoy": {"Nats-Request-Info: " + forged}, "Nats-Request-Info": {forged}},
	} {
		h.Set(codec.HeaderContentType, codec.JSONType)
		resp := decodeAs(t, request(t, bob, rpcSubject, body, h), codec.JSONType)
		e := wireError(t, resp)
		require.Equal(t, string(schema.CodePermissionDenied), e["code"], name)
		require.Equal(t, "bob", details(t, e)["user"], name)
	}
	require.Zero(t, f.calls.Load())
}

// TestAuthzPrivateSubjects: a caller in another account, even one without
// NATS permissions of its own, reaches nothing but the imported subjects;
// its exec and gossip messages never get to a node.
func TestAuthzPrivateSubjects(t *testing.T) {
	f := newAuthzFixture(t)
	bob := f.dial(t, "mallory")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	exec, err := json.Marshal(map[string]any{"cluster": "default", "id": "x", "fun": "panic", "args": []any{}})
	require.NoError(t, err)
	_, err = bob.RequestMsgWithContext(ctx, &nats.Msg{Subject: execSubject("n1"), Data: exec, Header: jsonHeader()})
	require.ErrorIs(t, err, nats.ErrNoResponders)
	_, err = bob.RequestMsgWithContext(ctx, &nats.Msg{Subject: infoSubject("n1"), Header: jsonHeader()})
	require.ErrorIs(t, err, nats.ErrNoResponders)
	hello, err := json.Marshal(map[string]any{"cluster": "default", "node": "rogue", "incarnation": 1, "version": 1,
		"funs": map[string]any{"add": []string{}}, "codecs": []string{"json"}})
	require.NoError(t, err)
	require.NoError(t, bob.PublishMsg(&nats.Msg{Subject: "mpreg.default.gossip.hello", Data: hello, Header: jsonHeader()}))
	require.NoError(t, bob.Flush())
	// The node answers a sync from its own account after bob's hello: had
	// the hello arrived, the rogue node would be in its table by then.
	local := f.client(t, "node", true)
	_, err = local.Call(context.Background(), "whoami", nil)
	require.NoError(t, err)
	_, known := f.node.Table().Get("rogue")
	require.False(t, known, "a hello from another account reached the node")
	require.Zero(t, f.calls.Load())
}

// TestAuthzCancelIsPerCaller: bob cannot stop alice's request by its id;
// alice can.
func TestAuthzCancelIsPerCaller(t *testing.T) {
	f := newAuthzFixture(t)
	alice := f.dial(t, "alice")
	bob := f.dial(t, "bob")
	send := func(id string) <-chan *nats.Msg {
		body := []byte(`{"id": "` + id + `", "cmds": [{"name": "s", "fun": "slow", "args": ["` + id + `"]}]}`)
		done := make(chan *nats.Msg, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			m, _ := alice.RequestMsgWithContext(ctx, &nats.Msg{Subject: rpcSubject, Data: body, Header: jsonHeader()})
			done <- m
		}()
		testwait.Recv(t, f.slow.started, id+"'s step to start")
		return done
	}
	cancelMsg := func(id string) *nats.Msg {
		return &nats.Msg{Subject: "mpreg.default.cancel", Data: []byte(`{"id": "` + id + `"}`), Header: jsonHeader()}
	}
	first, second := send("alice-1"), send("alice-2")
	require.NoError(t, bob.PublishMsg(cancelMsg("alice-1")))
	require.NoError(t, bob.Flush())
	// The node reads cancels in the order the server took them: once
	// alice's cancel of alice-2 has ended it, bob's was read too.
	require.NoError(t, alice.PublishMsg(cancelMsg("alice-2")))
	require.NoError(t, alice.Flush())
	m := testwait.Recv(t, second, "alice-2's response")
	require.NotNil(t, m)
	require.Equal(t, string(schema.CodeCancelled), wireError(t, decodeAs(t, m, codec.JSONType))["code"])

	f.slow.Release()
	m = testwait.Recv(t, first, "alice-1's response")
	require.NotNil(t, m)
	resp := decodeAs(t, m, codec.JSONType)
	require.Nil(t, resp["error"], "bob's cancel stopped alice's request")
	require.Equal(t, map[string]any{"s": "alice-1"}, resp["results"])
}

// TestAuthzLongCallAcrossAccounts: a caller in another account cannot see
// the planners' info subjects; a request that outlives the client's
// planner checks many times over still succeeds, following or not. When
// the caller gives up, its cancel crosses the import and stops the step.
func TestAuthzLongCallAcrossAccounts(t *testing.T) {
	f := newAuthzFixture(t)
	p, err := authz.Parse([]byte(`{"rules": [{"account": "APP", "allow": ["slow"]}]}`))
	require.NoError(t, err)
	f.node.SetAuthz(p)
	// mallory may publish anywhere in APP: her client's checks of the
	// planner's info subject meet "no responders", not a NATS refusal.
	for _, c := range []struct {
		user   string
		follow bool
	}{{"mallory", false}, {"mallory", true}, {"alice", false}} {
		follow := c.follow
		alice := testcluster.Client(t, f.url, client.Config{
			Dial:     bus.ConnConfig{Auth: bus.Auth{User: c.user, Password: passwords[c.user]}, Options: inboxOption(c.user)},
			NoFollow: !follow, PlannerCheck: 20 * time.Millisecond, DeadAfter: 100 * time.Millisecond})
		id := fmt.Sprintf("long-%s-%v", c.user, follow)
		done := make(chan error, 1)
		go func() {
			_, err := alice.Run(context.Background(), &schema.Request{ID: id, Cmds: []schema.Command{{Name: "s", Fun: "slow", Args: []any{id}}}})
			done <- err
		}()
		require.Equal(t, id, testwait.Recv(t, f.slow.started, "the step to start"))
		// Ten times the client's DeadAfter: a watch that took silence for
		// loss would have ended the request by now.
		select {
		case err := <-done:
			t.Fatalf("following=%v: the request ended while its step ran: %v", follow, err)
		case <-time.After(time.Second):
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			_, err := alice.Run(ctx, &schema.Request{ID: id + "-cancelled", Cmds: []schema.Command{{Name: "s", Fun: "slow", Args: []any{id}}}})
			done <- err
		}()
		testwait.Recv(t, f.slow.started, "the second step to start")
		cancel()
		require.ErrorIs(t, testwait.Recv(t, f.slow.cancelled, "the cancel to reach the step"), context.Canceled)
		requireCode(t, testwait.Recv(t, done, "the cancelled request"), schema.CodeCancelled)
		f.slow.Release()
		require.NoError(t, testwait.Recv(t, done, "the long request"))
		f.slow = newBlocker()
		t.Cleanup(f.slow.Release)
		require.NoError(t, f.node.Register("slow", f.slow.Fn))
	}
}
