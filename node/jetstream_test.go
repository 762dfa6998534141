package node_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// startLogged starts a node on nc whose log goes to the returned buffer
// (JSON), and reports how long Start took.
func startLogged(t *testing.T, dial *bus.ConnConfig, url string, id string, probe time.Duration) (*node.Node, *testwait.Buffer, time.Duration) {
	t.Helper()
	logs := &testwait.Buffer{}
	cfg := testcluster.NodeConfig(t, id)
	cfg.Objects.JetStreamProbe = probe
	cfg.Hooks.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	opts := []testcluster.ConnOption{}
	if dial != nil {
		opts = append(opts, testcluster.WithConnConfig(*dial))
	}
	n, err := node.New(testcluster.Conn(t, url, opts...), cfg)
	require.NoError(t, err)
	t.Cleanup(n.Close)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	started := time.Now()
	require.NoError(t, n.Start(ctx))
	return n, logs, time.Since(started)
}

// known waits for the node's JetStream probe to end, within the default
// window and some slack, and returns how long that took from now.
func known(t *testing.T, n *node.Node) time.Duration {
	t.Helper()
	started := time.Now()
	select {
	case <-n.JetStreamKnown():
	case <-time.After(node.DefaultConfig().Objects.JetStreamProbe + 5*time.Second):
		t.Fatal("the JetStream probe did not end within its bound")
	}
	return time.Since(started)
}

// TestJetStreamProbe: a node finds out at start whether JetStream serves
// its account, and logs it once: available on a server with JetStream;
// absent at once without it; absent once Config.Objects.JetStreamProbe has passed
// while nothing answers (here the account may not publish to the
// JetStream API), each ask bounded by JetStreamProbeWait. Start does not
// wait for the probe.
func TestJetStreamProbe(t *testing.T) {
	on := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
	n, logs, _ := startLogged(t, nil, on.ClientURL(), "js-on", 0)
	known(t, n)
	require.Equal(t, node.JetStreamAvailable, n.JetStream())
	require.Equal(t, "available", n.JetStream().String())
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"JetStream available"`), logs.String())

	off := testcluster.Server(t)
	n, logs, _ = startLogged(t, nil, off.ClientURL(), "js-off", 0)
	took := known(t, n)
	require.Equal(t, node.JetStreamAbsent, n.JetStream())
	require.Less(t, took, time.Second, "no responders tells at once")
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"JetStream absent`), logs.String())
	require.Contains(t, logs.String(), `"reason":"bus: JetStream not available`)

	silent := silentJetStream(t)
	n, logs, startTook := startLogged(t, &bus.ConnConfig{Servers: []string{silent.ClientURL()}, Auth: bus.Auth{User: "n", Password: "p"}},
		silent.ClientURL(), "js-silent", 2500*time.Millisecond)
	require.Equal(t, node.JetStreamUnknown, n.JetStream(), "Start returned before the probe's bound (Start took %s)", startTook)
	require.Less(t, startTook, node.JetStreamProbeWait)
	probeTook := startTook + known(t, n)
	require.Equal(t, node.JetStreamAbsent, n.JetStream())
	require.GreaterOrEqual(t, probeTook, 2500*time.Millisecond, "asked again until the window passed")
	require.Contains(t, logs.String(), "no answer from the JetStream API")
	t.Logf("Start took %s; the probe ended %s after Start began", startTook, probeTook)
}

// TestJetStreamProbeCluster: a node that starts with a JetStream cluster,
// before the cluster has a meta leader, finds JetStream available: the
// probe asks again while the cluster does not answer.
func TestJetStreamProbeCluster(t *testing.T) {
	servers := testcluster.JetStreamCluster(t, 3)
	n, logs, startTook := startLogged(t, nil, servers[2].ClientURL(), "js-cluster", 0)
	t.Logf("Start took %s; the probe ended %s later", startTook, known(t, n))
	require.Equal(t, node.JetStreamAvailable, n.JetStream(), logs.String())
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"JetStream available"`), logs.String())
}

// TestJetStreamProbeClose: closing a node ends its probe at once, and a
// node closed before it started has its probe ended too.
func TestJetStreamProbeClose(t *testing.T) {
	silent := silentJetStream(t)
	n, _, _ := startLogged(t, &bus.ConnConfig{Servers: []string{silent.ClientURL()}, Auth: bus.Auth{User: "n", Password: "p"}},
		silent.ClientURL(), "js-close", 0)
	closed := time.Now()
	n.Close()
	require.Less(t, known(t, n), time.Second)
	require.Less(t, time.Since(closed), node.JetStreamProbeWait, "Close does not wait out the probe")
	require.Equal(t, node.JetStreamUnknown, n.JetStream())

	unstarted, err := node.New(testcluster.Conn(t, silent.ClientURL(),
		testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{silent.ClientURL()}, Auth: bus.Auth{User: "n", Password: "p"}})),
		testcluster.NodeConfig(t, "never"))
	require.NoError(t, err)
	unstarted.Close()
	known(t, unstarted)
}

// silentJetStream starts a server whose user n (password p) may not
// publish to the JetStream API: a probe of it gets no answer at all.
func silentJetStream(t *testing.T) *bus.Server {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`authorization { users = [
  { user: n, password: p, permissions: { publish: { deny: ["$JS.API.>"] } } }
] }
`), 0o600))
	silent, err := bus.StartServer(bus.ServerConfig{ConfigFile: conf, Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	t.Cleanup(silent.Shutdown)
	return silent
}
