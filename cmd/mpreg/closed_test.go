package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
)

// routedServer starts a nats-server on a random loopback port that routes
// to route (when not empty), with opts adjusted by edit.
func routedServer(t *testing.T, route string, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "t", Host: "127.0.0.1", Port: -1}}
	if route != "" {
		o.Routes = server.RoutesFromStr(route)
	}
	if edit != nil {
		edit(o)
	}
	s, err := server.NewServer(o)
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// A node whose NATS connection is closed for good (here: the server
// refuses a reply line longer than its max_control_line and drops the
// connection, which nats.go does not reconnect) must not linger serving
// nothing: it exits non-zero, naming the cause, so that a supervisor
// restarts it.
func TestNodeExitsWhenNATSClosesItsConnection(t *testing.T) {
	t.Parallel()
	a := routedServer(t, "", nil)
	b := routedServer(t, "nats-route://"+a.ClusterAddr().String(), func(o *server.Options) { o.MaxControlLine = 256 })
	testcluster.WaitFor(t, "the route", func() error {
		if a.NumRoutes() == 0 || b.NumRoutes() == 0 {
			return errors.New("no route yet")
		}
		return nil
	})
	d := startDaemon(t, "node", "--servers", b.ClientURL(), "--node-id", "victim", "--demo")
	d.waitFor(t, "the node to serve", func() error {
		if r := mpreg(t, opts{}, "call", "whoami", "--servers", a.ClientURL(), "--timeout", "2s"); r.code != 0 {
			return errors.New(r.stderr)
		}
		return nil
	})

	// A caller on the other server asks for a reply on a subject that
	// server accepts and the node's server does not.
	nc, err := nats.Connect(a.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.PublishRequest("mpreg.default.node.victim.exec", strings.Repeat("r", 300),
		[]byte(`{"cluster":"default","fun":"whoami"}`)))
	require.NoError(t, nc.Flush())

	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("the node lingers after its connection was closed:\n%s", d.stderr.String())
	}
	var ee *exec.ExitError
	require.ErrorAs(t, d.err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Contains(t, d.stderr.String(), "NATS connection closed for good")
}
