package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/node"
)

// confinedConf puts the nodes in account MPREG and alice in APP, which
// imports ext.rpc and ext.cancel as rpc and cancel (share: true, as
// examples/secure does); alice may subscribe only
// _INBOX_alice.>, and ops, in MPREG, only its own inboxes and MPREG's
// subjects.
const confinedConf = `accounts {
  MPREG {
    users: [
      {user: node, password: n}
      {user: ops, password: o, permissions: {subscribe: ["mpreg.>", "bench.>", "$SRV.>", "_INBOX_ops.>"]}}
    ]
    exports: [
      {service: "mpreg.default.ext.rpc", response_type: stream}
      {service: "mpreg.default.ext.cancel"}
    ]
  }
  APP {
    users: [{user: alice, password: a, permissions: {publish: ["mpreg.default.rpc", "mpreg.default.cancel"], subscribe: ["_INBOX_alice.>"]}}]
    imports: [
      {service: {account: MPREG, subject: "mpreg.default.ext.rpc"}, to: "mpreg.default.rpc", share: true}
      {service: {account: MPREG, subject: "mpreg.default.ext.cancel"}, to: "mpreg.default.cancel", share: true}
    ]
  }
}
`

// TestInboxPrefixFlag: every client command takes --inbox-prefix, so that
// users confined to their own inboxes can call; without it NATS refuses
// the inbox. A dry run from alice's account shows no node.
func TestInboxPrefixFlag(t *testing.T) {
	srv := testsecure.Server(t, confinedConf)
	url := srv.ClientURL()
	nc := testcluster.Conn(t, url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}, Auth: bus.Auth{User: "node", Password: "n"}}))
	testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1", "cpu"), func(n *node.Node) { require.NoError(t, demo.Register(n)) })
	alice := []string{"--servers", url, "--user", "alice", "--password", "a", "--inbox-prefix", "_INBOX_alice"}
	ops := []string{"--servers", url, "--user", "ops", "--password", "o", "--inbox-prefix", "_INBOX_ops"}

	r := mpreg(t, opts{}, append([]string{"call", "add", "2", "3"}, alice...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "5\n", r.stdout)
	r = mpreg(t, opts{}, append([]string{"call", "add", "2", "3"}, alice[:len(alice)-2]...)...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "PERMISSION_DENIED: NATS does not let this connection subscribe its reply inbox")
	require.Contains(t, r.stderr, "--inbox-prefix")
	require.Contains(t, r.stderr, `Subscription to "_INBOX.`)
	r = mpreg(t, opts{env: []string{"MPREG_INBOX_PREFIX=_INBOX_alice"}}, append([]string{"call", "add", "2", "3"}, alice[:len(alice)-2]...)...)
	require.Equal(t, 0, r.code, r.stderr)

	req := `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}, {"name": "b", "fun": "upper", "args": ["a"], "locs": ["gpu"]}]}`
	r = mpreg(t, opts{stdin: req}, append([]string{"run", "-", "--explain"}, alice...)...)
	require.Equal(t, 1, r.code, r.stderr)
	require.Regexp(t, `(?m)^a\s+add\s+-\s+-\s+\(hidden\)\s+\(hidden\)$`, r.stdout)
	require.Regexp(t, `(?m)^b\s+upper\s+gpu\s+a\s+-\s+-$`, r.stdout)
	require.NotContains(t, r.stdout, "n1")
	r = mpreg(t, opts{stdin: req}, append([]string{"run", "-", "--explain"}, ops...)...)
	require.Equal(t, 1, r.code, r.stderr)
	require.Regexp(t, `(?m)^a\s+add\s+-\s+-\s+n1\s+n1$`, r.stdout)
	r = mpreg(t, opts{stdin: `{"cmds": [{"name": "a", "fun": "add", "args": [1, 2]}]}`}, append([]string{"run", "-"}, alice...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"a": 3`)

	// The cancel crosses the import and its answer comes back to alice's
	// inbox; no node planned the id, so none answers.
	r = mpreg(t, opts{}, append([]string{"cancel", "nothing-of-mine", "--wait", "200ms"}, alice...)...)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, `no node knew request "nothing-of-mine"`)

	r = mpreg(t, opts{}, append([]string{"peers", "--json"}, ops...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"node": "n1"`)

	r = mpreg(t, opts{}, append([]string{"bench", "--duration", "50ms", "--concurrency", "2"}, ops...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "mpreg bench: nats-server")
}
