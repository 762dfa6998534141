package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
)

// secureConf is examples/secure/nats.conf listening on port.
func secureConf(t *testing.T, port int) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/secure/nats.conf")
	require.NoError(t, err)
	conf := strings.Replace(string(b), "listen: 127.0.0.1:4322", fmt.Sprintf("listen: 127.0.0.1:%d", port), 1)
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	return path
}

// writeFile writes a file in a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// TestSecretsNeverPrinted runs whole clusters with a known password and
// token (given as flags, in URLs and in the environment), calls them
// rightly and wrongly, and finds neither secret in any byte any process
// printed.
func TestSecretsNeverPrinted(t *testing.T) {
	const password = "pa55-w0rd-7c1e9"
	const token = "t0ken-93ab1f55"
	var outputs []string
	run := func(want int, args ...string) result {
		r := mpreg(t, opts{}, args...)
		outputs = append(outputs, r.stdout, r.stderr)
		require.Equal(t, want, r.code, "mpreg %v: %s", args, r.stderr)
		return r
	}

	// Users and passwords, in accounts, for the server's own node, a node
	// of its own process and the callers.
	port := testcluster.FreePort(t)
	conf := writeFile(t, "users.conf", fmt.Sprintf(`listen: 127.0.0.1:%d
accounts { MPREG { users: [{user: node, password: %q}] } }
`, port, password))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	withSecret := fmt.Sprintf("nats://node:%s@127.0.0.1:%d", password, port)
	server := startDaemon(t, "server", "--nats-config", conf, "--user", "node", "--password", password,
		"--demo", "--node-id", "s1", "--log-level", "debug")
	node := startDaemon(t, "node", "--servers", withSecret, "--demo", "--node-id", "n2", "--log-level", "debug")
	server.waitFor(t, "both nodes", func() error {
		r := mpreg(t, opts{}, "peers", "--servers", url, "--user", "node", "--password", password)
		if !strings.Contains(r.stdout, "n2") || !strings.Contains(r.stdout, "s1") {
			return fmt.Errorf("peers: %s %s", r.stdout, r.stderr)
		}
		return nil
	})
	run(0, "call", "add", "2", "3", "--servers", url, "--user", "node", "--password", password)
	run(0, "call", "whoami", "--servers", withSecret)
	r := run(0, "peers", "--json", "--servers", withSecret)
	require.Contains(t, r.stdout, "advertised_urls")
	outputs = append(outputs, mpreg(t, opts{env: []string{"MPREG_USER=node", "MPREG_PASSWORD=" + password}}, "call", "upper", "x", "--servers", url).stdout)
	r = run(1, "call", "add", "1", "1", "--servers", url, "--user", "node", "--password", "wrong")
	require.True(t, strings.HasPrefix(r.stderr, "UNAUTHENTICATED: "), r.stderr)
	r = run(1, "call", "add", "1", "1", "--servers", fmt.Sprintf("nats://node:%s@127.0.0.1:%d", password, testcluster.FreePort(t)))
	require.Contains(t, r.stderr, "NODE_UNAVAILABLE: cannot reach NATS at nats://node:xxxxx@127.0.0.1:")
	run(2, "node", "--servers", url, "--user", "node", "--password", password, "--token", password)

	// A token, for the server's node, a node given it in its URL, callers.
	port2 := testcluster.FreePort(t)
	conf2 := writeFile(t, "token.conf", fmt.Sprintf("listen: 127.0.0.1:%d\nauthorization { token: %q }\n", port2, token))
	url2 := fmt.Sprintf("nats://127.0.0.1:%d", port2)
	server2 := startDaemon(t, "server", "--nats-config", conf2, "--token", token, "--demo", "--node-id", "t1", "--log-level", "debug", "--cluster", "tok")
	node2 := startDaemon(t, "node", "--servers", fmt.Sprintf("nats://%s@127.0.0.1:%d", token, port2), "--demo", "--node-id", "t2", "--cluster", "tok", "--log-level", "debug")
	server2.waitFor(t, "both token nodes", func() error {
		r := mpreg(t, opts{}, "peers", "--servers", url2, "--token", token, "--cluster", "tok")
		if !strings.Contains(r.stdout, "t1") || !strings.Contains(r.stdout, "t2") {
			return fmt.Errorf("peers: %s %s", r.stdout, r.stderr)
		}
		return nil
	})
	run(0, "call", "add", "2", "3", "--servers", url2, "--token", token, "--cluster", "tok")
	outputs = append(outputs, mpreg(t, opts{stdin: `{"cmds": [{"name": "w", "fun": "whoami", "args": []}]}`}, "run", "-", "--servers", url2, "--token", token, "--cluster", "tok").stdout)
	run(0, "peers", "--json", "--servers", fmt.Sprintf("nats://%s@127.0.0.1:%d", token, port2), "--cluster", "tok")
	r = run(1, "call", "add", "1", "1", "--servers", url2, "--token", "not-the-token", "--cluster", "tok")
	require.True(t, strings.HasPrefix(r.stderr, "UNAUTHENTICATED: "), r.stderr)

	for _, d := range []*daemon{node, server, node2, server2} {
		d.stop(t, syscall.SIGTERM, 0)
		outputs = append(outputs, d.stderr.String())
	}
	all := strings.Join(outputs, "\n")
	require.Contains(t, all, "node serving", "the daemons' logs are in")
	for _, line := range strings.Split(all, "\n") {
		for name, secret := range map[string]string{"<PASSWORD>": password, "<TOKEN>": token} {
			if strings.Contains(line, secret) {
				t.Errorf("a secret was printed: %s", strings.ReplaceAll(line, secret, name))
			}
		}
	}
}

// TestUnauthenticatedFails: a one-shot command with wrong or missing
// credentials exits 1 within 2 s, saying UNAUTHENTICATED.
func TestUnauthenticatedFails(t *testing.T) {
	pki := testsecure.NewPKI(t)
	srv := testsecure.Server(t, "authorization { users: [{user: u, password: p}] }\n")
	tlsSrv := testsecure.Server(t, fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n", pki.ServerCert, pki.ServerKey, pki.CA))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "whoami", "--servers", srv.ClientURL(), "--user", "u", "--password", "wrong"}, "UNAUTHENTICATED: NATS refused the credentials"},
		{[]string{"run", "-", "--servers", srv.ClientURL()}, "UNAUTHENTICATED: NATS refused the credentials"},
		{[]string{"peers", "--servers", srv.ClientURL(), "--user", "x", "--password", "p"}, "UNAUTHENTICATED: NATS refused the credentials"},
		{[]string{"bench", "--servers", srv.ClientURL(), "--user", "u", "--password", "wrong", "--duration", "100ms"}, "UNAUTHENTICATED: bench: NATS refused the credentials"},
		{[]string{"call", "whoami", "--servers", tlsSrv.ClientURL(), "--tls-ca", pki.OtherCA}, "UNAUTHENTICATED: TLS: the server's certificate is signed by an unknown authority"},
		{[]string{"peers", "--servers", tlsSrv.ClientURL(), "--tls-ca", pki.CA}, "UNAUTHENTICATED: TLS: the server "},
	} {
		start := time.Now()
		r := mpreg(t, opts{stdin: `{"cmds": [{"name": "w", "fun": "whoami", "args": []}]}`}, tc.args...)
		require.Less(t, time.Since(start), 2*time.Second, "%v", tc.args)
		require.Equal(t, 1, r.code, "%v", tc.args)
		require.True(t, strings.HasPrefix(r.stderr, tc.want), "%v: %s", tc.args, r.stderr)
		if strings.Contains(tc.want, "the server ") {
			require.Contains(t, r.stderr, "client certificate")
		}
	}
	r := mpreg(t, opts{}, "call", "whoami", "--servers", tlsSrv.ClientURL(), "--tls-ca", pki.CA, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "NO_ROUTE", "with the right certificate the connection is made; no node serves")
}

// TestAuthzPolicyReload runs examples/secure: a server whose node has the
// example policy; alice and bob call as the walk-through shows; SIGHUP
// reads a changed policy, and a broken one keeps the policy in force.
func TestAuthzPolicyReload(t *testing.T) {
	port := testcluster.FreePort(t)
	conf := secureConf(t, port)
	b, err := os.ReadFile("../../examples/secure/policy.json")
	require.NoError(t, err)
	policy := writeFile(t, "policy.json", string(b))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	d := startDaemon(t, "server", "--nats-config", conf, "--user", "node", "--password", "node-secret", "--demo", "--authz", policy)
	as := func(user string, args ...string) result {
		// Each caller may subscribe only on its own inbox prefix.
		return mpreg(t, opts{}, append(args, "--servers", url, "--user", user, "--password", user+"-secret", "--inbox-prefix", "_INBOX_"+user)...)
	}
	d.waitFor(t, "the node to answer alice", func() error {
		if r := as("alice", "call", "add", "1", "2"); r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	r := as("alice", "call", "add", "2", "3")
	require.Equal(t, "5\n", r.stdout)
	r = as("alice", "call", "panic")
	require.Equal(t, 1, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "PERMISSION_DENIED: "), r.stderr)
	r = as("bob", "call", "add", "2", "3")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `PERMISSION_DENIED: account "APP" user "bob" may not run add`)
	require.Equal(t, 0, as("bob", "call", "whoami").code)

	require.NoError(t, os.WriteFile(policy, []byte(`{"rules": [{"account": "APP", "allow": ["add"]}]}`), 0o600))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	d.waitFor(t, "bob to be allowed add", func() error {
		if r := as("bob", "call", "add", "2", "3"); r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	require.NoError(t, os.WriteFile(policy, []byte(`{"rules": [{"account": "APP", "alow": ["*"]}]}`), 0o600))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	d.waitFor(t, "the bad policy to be refused", func() error {
		if !strings.Contains(d.stderr.String(), "policy not reloaded") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	require.Contains(t, d.stderr.String(), `unknown field \"alow\"`)
	require.Equal(t, 0, as("bob", "call", "add", "2", "3").code, "the previous policy stays")
	require.Equal(t, 1, as("bob", "call", "whoami").code)
	d.stop(t, syscall.SIGTERM, 0)

	// The in-process node without the identity the file asks for.
	start := time.Now()
	r = mpreg(t, opts{}, "server", "--nats-config", conf, "--demo")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "UNAUTHENTICATED: the --nats-config server refuses the in-process node's identity")
	require.Less(t, time.Since(start), 2*time.Second)

	// A policy that does not parse stops the start, naming the key.
	bad := writeFile(t, "bad.json", `{"default": "perhaps"}`)
	r = mpreg(t, opts{}, "node", "--servers", url, "--authz", bad)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `"default" must be "allow" or "deny"`)
}

// TestAuthFlagMistakes: a credentials mistake is a usage error (exit 2)
// that names the flags as they are typed, with their dashes, before
// anything connects.
func TestAuthFlagMistakes(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.creds")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "echo", "x", "--user", "u", "--token", "t"},
			"mpreg: error: call: choose one of --creds, --nkey, --user/--password and --token, not --user/--password and --token\n"},
		{[]string{"run", "-", "--nkey", missing, "--creds", missing},
			"mpreg: error: run: choose one of --creds, --nkey, --user/--password and --token, not --creds and --nkey\n"},
		{[]string{"peers", "--password", "p"}, "mpreg: error: peers: --password needs --user\n"},
		{[]string{"node", "--tls-cert", "c.pem"}, "mpreg: error: node: --tls-cert and --tls-key go together\n"},
		{[]string{"server", "--creds", missing}, "mpreg: error: server: --creds: stat " + missing + ": no such file or directory\n"},
		{[]string{"bench", "--token", "t", "--user", "u", "--password", "p"},
			"mpreg: error: bench: choose one of --creds, --nkey, --user/--password and --token, not --user/--password and --token\n"},
	} {
		r := mpreg(t, opts{}, tc.args...)
		assert.Equal(t, 2, r.code, "%v", tc.args)
		assert.True(t, strings.HasPrefix(r.stderr, tc.want), "%v: stderr %q, want %q", tc.args, r.stderr, tc.want)
	}
}

// A durable request from a caller of another account is that caller's
// alone: alice submits it and fetches it by id; bob, asking for the same
// id, learns nothing of it.
func TestDurableCallerOwnsRequest(t *testing.T) {
	port := testcluster.FreePort(t)
	conf := secureConf(t, port)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	d := startDaemon(t, "server", "--nats-config", conf, "--user", "node", "--password", "node-secret", "--demo")
	as := func(user string, args ...string) result {
		return mpreg(t, opts{stdin: `{"id": "mine-1", "cmds": [{"name": "a", "fun": "add", "args": [2, 3]}]}`},
			append(args, "--servers", url, "--user", user, "--password", user+"-secret", "--inbox-prefix", "_INBOX_"+user)...)
	}
	d.waitFor(t, "durable requests", func() error {
		if r := as("alice", "submit", "-"); r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	r := as("alice", "get", "mine-1", "--wait", "--timeout", "10s")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"a": 5`)
	r = as("bob", "status", "mine-1")
	require.Equal(t, 1, r.code)
	require.Equal(t, "unknown\n", r.stdout, r.stderr)
	r = as("bob", "get", "mine-1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no durable request")
	d.stop(t, syscall.SIGTERM, 0)
}
