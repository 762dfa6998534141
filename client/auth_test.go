package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/schema"
)

// oneShot dials once, as the CLI's one-shot commands do.
var oneShot = []nats.Option{nats.RetryOnFailedConnect(false), nats.MaxReconnects(0)}

// failFast is how long a refused connection may take to be reported.
const failFast = 2 * time.Second

// TestAuthMethods runs a node and a client against a nats-server that
// requires each method in turn: the right secret serves a call, a wrong
// one ends Connect at once with UNAUTHENTICATED saying what failed.
func TestAuthMethods(t *testing.T) {
	pki := testsecure.NewPKI(t)
	nkeySeed, nkeyPub := testsecure.NKey(t)
	wrongSeed, _ := testsecure.NKey(t)
	op := testsecure.NewOperator(t)
	tlsConf := "tls {\n cert_file: \"" + pki.ServerCert + "\"\n key_file: \"" + pki.ServerKey + "\"\n}\n"
	mtlsConf := "tls {\n cert_file: \"" + pki.ServerCert + "\"\n key_file: \"" + pki.ServerKey + "\"\n ca_file: \"" + pki.CA + "\"\n verify: true\n}\n"
	cases := []struct {
		name       string
		conf       string
		good, bad  bus.Auth
		why        string // in the refusal's message
		errorsLike error  // the refusal's cause, when nats.go names it
	}{
		{name: "token", conf: "authorization { token: \"s3cret-token\" }\n",
			good: bus.Auth{Token: "s3cret-token"}, bad: bus.Auth{Token: "wrong"},
			why: "NATS refused the credentials", errorsLike: nats.ErrAuthorization},
		{name: "user/password", conf: "authorization { users: [{user: alice, password: \"pa55word\"}] }\n",
			good: bus.Auth{User: "alice", Password: "pa55word"}, bad: bus.Auth{User: "alice", Password: "nope"},
			why: "NATS refused the credentials", errorsLike: nats.ErrAuthorization},
		{name: "missing credentials", conf: "authorization { users: [{user: alice, password: \"pa55word\"}] }\n",
			good: bus.Auth{User: "alice", Password: "pa55word"}, bad: bus.Auth{},
			why: "NATS refused the credentials", errorsLike: nats.ErrAuthorization},
		{name: "nkey", conf: "authorization { users: [{nkey: " + nkeyPub + "}] }\n",
			good: bus.Auth{NKey: nkeySeed}, bad: bus.Auth{NKey: wrongSeed},
			why: "NATS refused the credentials", errorsLike: nats.ErrAuthorization},
		{name: "jwt creds", conf: op.Config,
			good: bus.Auth{Creds: op.Creds}, bad: bus.Auth{Creds: op.OtherCreds},
			why: "NATS refused the credentials", errorsLike: nats.ErrAuthorization},
		{name: "tls private CA", conf: tlsConf,
			good: bus.Auth{TLSCA: pki.CA}, bad: bus.Auth{TLSCA: pki.OtherCA},
			why: "unknown authority"},
		{name: "mtls", conf: mtlsConf,
			good: bus.Auth{TLSCA: pki.CA, TLSCert: pki.ClientCert, TLSKey: pki.ClientKey}, bad: bus.Auth{TLSCA: pki.CA},
			why: "client certificate"}, // "requires a client certificate", or hung up after the handshake (TLS 1.3)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsecure.Server(t, tc.conf)
			url := srv.ClientURL()
			nc := testcluster.Conn(t, url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}, Auth: tc.good}))
			testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1"), nil)

			cl := testcluster.Client(t, url, client.Config{Dial: bus.ConnConfig{Auth: tc.good}})
			out, err := cl.Call(context.Background(), "echo", []any{"hello"})
			require.NoError(t, err)
			require.Equal(t, "hello", out)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			bad, err := client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: []string{url}, Auth: tc.bad, Options: oneShot}, NoFollow: true})
			took := time.Since(start)
			if bad != nil {
				bad.Close()
			}
			require.Error(t, err)
			require.ErrorIs(t, err, schema.ErrUnauthenticated)
			require.Contains(t, err.Error(), tc.why)
			if tc.errorsLike != nil {
				require.ErrorIs(t, err, tc.errorsLike)
			}
			t.Logf("refused in %s: %v", took, err)
			require.Less(t, took, failFast)
		})
	}
}

// TestAuthTLSHostname dials a server whose certificate names another host.
func TestAuthTLSHostname(t *testing.T) {
	pki := testsecure.NewPKI(t)
	srv := testsecure.Server(t, "tls {\n cert_file: \""+pki.WrongHostCert+"\"\n key_file: \""+pki.WrongHostKey+"\"\n}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: []string{srv.ClientURL()}, Auth: bus.Auth{TLSCA: pki.CA}, Options: oneShot}, NoFollow: true})
	require.ErrorIs(t, err, schema.ErrUnauthenticated)
	require.Contains(t, err.Error(), "does not name the host dialed")
}

// TestAuthConfigMistakes are refused before dialing, naming the field.
func TestAuthConfigMistakes(t *testing.T) {
	for _, tc := range []struct {
		auth bus.Auth
		want string
	}{
		{bus.Auth{Token: "t", User: "u"}, "choose one of"},
		{bus.Auth{Password: "p"}, "a password needs a user"},
		{bus.Auth{TLSCert: "c.pem"}, "tls-cert and tls-key go together"},
		{bus.Auth{Creds: "/nonexistent/user.creds"}, "creds:"},
	} {
		_, err := client.Connect(context.Background(), client.Config{Dial: bus.ConnConfig{Servers: []string{"nats://127.0.0.1:1"}, Auth: tc.auth, Options: oneShot}, NoFollow: true})
		require.ErrorIs(t, err, client.ErrInvalidConfig)
		require.ErrorIs(t, err, bus.ErrInvalidConfig)
		require.Contains(t, err.Error(), tc.want)
		var se *schema.Error
		require.False(t, errors.As(err, &se), "a config mistake is not an RPC error")
		require.False(t, strings.Contains(err.Error(), "p\""), "no secret in %q", err)
	}
}

// TestPublishDeniedIsPermissionDenied: a caller that NATS does not let
// publish on the rpc subject gets PERMISSION_DENIED at once, not TIMEOUT
// at the end of its budget; so does one that may not subscribe its inbox.
func TestPublishDeniedIsPermissionDenied(t *testing.T) {
	srv := testsecure.Server(t, `authorization { users: [
		{user: node, password: n}
		{user: bob, password: b, permissions: {publish: {deny: ["mpreg.*.rpc"]}}}
		{user: carol, password: c, permissions: {subscribe: {deny: ["_INBOX.>"]}}}
	] }`)
	url := srv.ClientURL()
	nc := testcluster.Conn(t, url, testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{url}, Auth: bus.Auth{User: "node", Password: "n"}}))
	testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "n1"), nil)
	for _, who := range []bus.Auth{{User: "bob", Password: "b"}, {User: "carol", Password: "c"}} {
		cl := testcluster.Client(t, url, client.Config{Dial: bus.ConnConfig{Auth: who}, NoFollow: true, Timeout: 20 * time.Second})
		start := time.Now()
		_, err := cl.Call(context.Background(), "echo", []any{"x"})
		took := time.Since(start)
		require.ErrorIs(t, err, schema.ErrPermissionDenied, who.User)
		require.Less(t, took, failFast, who.User)
		t.Logf("%s: %v in %s", who.User, err, took)
	}
}
