package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testsecure"
	"github.com/mpreg/mpreg/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSubjects(t *testing.T) {
	s := bus.NewSubjects("", "c1")
	require.Equal(t, "mpreg.c1.rpc", s.RPC())
	require.Equal(t, "mpreg.c1.node.n1.exec", s.Exec("n1"))
	require.Equal(t, "mpreg.c1.node.n1.info", s.Info("n1"))
	require.Equal(t, "mpreg.c1.gossip.hello", s.Hello())
	require.Equal(t, "mpreg.c1.gossip.heartbeat", s.Heartbeat())
	require.Equal(t, "mpreg.c1.gossip.goodbye", s.Goodbye())
	require.Equal(t, "mpreg.c1.gossip.sync", s.Sync())
	require.Equal(t, "acme.mpreg.x.rpc", bus.NewSubjects("acme.mpreg", "x").RPC())
	require.NoError(t, bus.CheckPrefix("acme.mpreg"))
	for _, bad := range []string{"a..b", "a.*", ">", "a b"} {
		require.Error(t, bus.CheckPrefix(bad), bad)
	}
}

func TestReplySubjects(t *testing.T) {
	s := bus.NewSubjects("", "default")
	for _, ok := range []string{"_INBOX.abc.1", "caller.acks", "mpregx.y"} {
		require.NoError(t, s.Reply(ok), ok)
	}
	for _, bad := range []string{"", "mpreg", "mpreg.default.gossip.goodbye", "mpreg.other.rpc", "a.*", "a.>", "a..b", "a b"} {
		require.Error(t, s.Reply(bad), bad)
	}
	require.NoError(t, bus.NewSubjects("acme.rpc", "c").Reply("mpreg.default.rpc"), "only the prefix in use is reserved")
	require.Error(t, bus.NewSubjects("acme.rpc", "c").Reply("acme.rpc.c.gossip.hello"))

	// Long subjects are refused before a node publishes on them: the NATS
	// server disconnects a client whose protocol line is too long.
	require.NoError(t, s.Reply(strings.Repeat("a", bus.MaxReplySubject)))
	require.Error(t, s.Reply(strings.Repeat("a", bus.MaxReplySubject+1)))
	require.Error(t, s.Reply(strings.Repeat("a", 4100)))
	require.NoError(t, bus.CheckInbox("_INBOX.x.y"))
	require.Error(t, bus.CheckInbox(strings.Repeat("a", bus.MaxInboxSubject+1)))
	require.Error(t, bus.CheckPrefix(strings.Repeat("p", bus.MaxPrefix+1)))
}

func TestSplitURLsAndHostPort(t *testing.T) {
	require.Equal(t, []string{"nats://a:1", "nats://b:2", "nats://c:3"},
		bus.SplitURLs("nats://a:1, nats://b:2", "", "nats://c:3"))
	h, p, err := bus.SplitHostPort("127.0.0.1:4222")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", h)
	require.Equal(t, 4222, p)
	_, p, err = bus.SplitHostPort("127.0.0.1:0")
	require.NoError(t, err)
	require.Equal(t, -1, p, "port 0 picks a free port")
	for _, bad := range []string{"nohost", "h:x", "h:70000"} {
		_, _, err := bus.SplitHostPort(bad)
		require.ErrorIs(t, err, bus.ErrInvalidConfig, bad)
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	base, ceiling := 100*time.Millisecond, time.Second
	for n := 1; n <= 10; n++ {
		want := base << (n - 1)
		if want > ceiling {
			want = ceiling
		}
		for i := 0; i < 50; i++ {
			d := bus.Backoff(n, base, ceiling)
			require.GreaterOrEqual(t, d, want*3/4, "attempt %d", n)
			require.LessOrEqual(t, d, want*5/4, "attempt %d", n)
		}
	}
}

func TestEmbeddedServerAndConnect(t *testing.T) {
	s, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	defer s.Shutdown()
	require.Equal(t, "", s.ClusterURL(), "not clustered")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{s.ClientURL()}})
	require.NoError(t, err)
	defer nc.Close()
	ip, err := bus.Connect(ctx, bus.ConnConfig{InProcess: s.NATS()})
	require.NoError(t, err)
	defer ip.Close()

	sub, err := nc.Subscribe("t.echo", func(m *nats.Msg) {
		require.Equal(t, "application/msgpack", bus.Header(m, "Content-Type"))
		require.Equal(t, "application/json", bus.Header(m, "accept"), "header names match without case as a fallback")
		_ = m.Respond(m.Data)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, bus.Flush(ctx, nc))
	msg := &nats.Msg{Subject: "t.echo", Data: []byte("hi"), Header: nats.Header{
		"Content-Type": []string{"application/msgpack"}, "accept": []string{"application/json"}}}
	reply, err := ip.RequestMsgWithContext(ctx, msg)
	require.NoError(t, err)
	require.Equal(t, "hi", string(reply.Data))
	require.True(t, bus.Fits(nc, msg))
	require.False(t, bus.Fits(nc, &nats.Msg{Data: make([]byte, nc.MaxPayload())}))
	// FitsWith sizes the same message without it built: up to the byte.
	seen := map[bool]int{}
	for _, n := range []int{0, 100, int(nc.MaxPayload()) - 96} {
		for extra := range 64 {
			m := &nats.Msg{Data: make([]byte, n+extra), Header: nats.Header{"Content-Type": []string{"application/msgpack"}}}
			fits := bus.FitsWith(nc, n+extra, "Content-Type", "application/msgpack")
			require.Equal(t, bus.Fits(nc, m), fits, "%d bytes", n+extra)
			seen[fits]++
		}
	}
	require.Positive(t, seen[false], "the sizes cross the limit")
	s.Shutdown() // idempotent with the deferred one
}

// TestBusyPortFailsFast: a client or route port already taken is an error
// at once, naming the address, not a wait for readiness.
func TestBusyPortFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	for name, cfg := range map[string]bus.ServerConfig{
		"client": {Host: "127.0.0.1", Port: port},
		"route":  {Host: "127.0.0.1", Port: -1, Cluster: bus.ClusterConfig{Host: "127.0.0.1", Port: port}},
	} {
		start := time.Now()
		s, err := bus.StartServer(cfg)
		require.Error(t, err, name)
		require.Nil(t, s)
		require.Contains(t, err.Error(), l.Addr().String(), name)
		require.Contains(t, err.Error(), name+" listen address", name)
		require.Less(t, time.Since(start), 2*time.Second, name)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// A port nothing listens on: the first connect is retried until ctx ends.
	_, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{"nats://127.0.0.1:1"}, ReconnectWait: 10 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestClusterOfThree(t *testing.T) {
	var servers []*bus.Server
	for i := 0; i < 3; i++ {
		cfg := bus.ServerConfig{Host: "127.0.0.1", Port: -1, Cluster: bus.ClusterConfig{Name: "t", Port: -1}}
		if i > 0 {
			cfg.Cluster.Routes = []string{servers[0].ClusterURL()}
		}
		s, err := bus.StartServer(cfg)
		require.NoError(t, err)
		defer s.Shutdown()
		servers = append(servers, s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range servers {
		for s.NumRoutes() < 2 {
			require.True(t, time.Now().Before(deadline), "routes did not form")
			time.Sleep(5 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{servers[0].ClientURL()}})
	require.NoError(t, err)
	defer a.Close()
	c, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{servers[2].ClientURL()}})
	require.NoError(t, err)
	defer c.Close()
	sub, err := c.Subscribe("x", func(m *nats.Msg) { _ = m.Respond([]byte("from c")) })
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, bus.Flush(ctx, c))
	var reply *nats.Msg
	for reply == nil { // interest crosses the routes asynchronously
		reply, err = a.Request("x", nil, time.Second)
		if err != nil {
			require.ErrorIs(t, err, nats.ErrNoResponders)
			require.NoError(t, ctx.Err())
		}
	}
	require.Equal(t, "from c", string(reply.Data))
}

// Handlers passed in ConnConfig.Options are chained with bus's own: a
// caller's ConnectHandler once replaced the one Connect waits on, so a
// connect whose first attempt failed hung until its context ended.
func TestConnectChainsCallerHandlers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	failed := make(chan struct{}, 1)
	connected := make(chan struct{}, 1)
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		nc, err := bus.Connect(ctx, bus.ConnConfig{
			Servers:       []string{fmt.Sprintf("nats://127.0.0.1:%d", port)},
			ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 20 * time.Millisecond,
			Options: []nats.Option{
				nats.ConnectHandler(func(*nats.Conn) { connected <- struct{}{} }),
				nats.ReconnectErrHandler(func(*nats.Conn, error) {
					select {
					case failed <- struct{}{}:
					default:
					}
				}),
			},
		})
		done <- result{nc, err}
	}()
	select {
	case <-failed: // the first attempt failed: nothing listens yet
	case <-ctx.Done():
		t.Fatal("the caller's ReconnectErrHandler was never called")
	}
	s, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: port})
	require.NoError(t, err)
	defer s.Shutdown()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("Connect did not return once the server was up")
	}
	require.NoError(t, r.err)
	defer r.nc.Close()
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("the caller's ConnectHandler was not called")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string][2]string{
		"nats://127.0.0.1:4222":             {"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		"nats://alice:s3cret@10.0.0.5:4222": {"nats://alice:xxxxx@10.0.0.5:4222", "nats://10.0.0.5:4222"},
		"nats://t0ken@host:4222":            {"nats://xxxxx@host:4222", "nats://host:4222"},
		"tls://u:p%40ss@host":               {"tls://u:xxxxx@host", "tls://host"},
		"host:4222":                         {"host:4222", "host:4222"},
		"t0ken@host:4222":                   {"xxxxx@host:4222", "host:4222"},
		"nats://a:b@[::1":                   {"xxxxx@[::1", "nats://[::1"},
	} {
		require.Equal(t, want[0], bus.Redact(in), in)
		require.Equal(t, want[1], bus.WithoutUserInfo(in), in)
	}
	require.Equal(t, []string{"nats://xxxxx@a:1", "nats://b:2"}, bus.RedactAll([]string{"nats://tok@a:1, nats://b:2"}))
}

// TestConnectKeepsTryingRefusedCredentials: a process that may retry
// (a node) keeps trying credentials the server refuses, says so once per
// backoff step, and gives up only when its context ends.
func TestConnectKeepsTryingRefusedCredentials(t *testing.T) {
	srv := testsecure.Server(t, "authorization { users: [{user: u, password: right}] }\n")
	var logs testwait.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{srv.ClientURL()}, Auth: bus.Auth{User: "u", Password: "wrong"},
			ReconnectWait: 5 * time.Millisecond, MaxReconnectWait: 10 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if nc != nil {
			nc.Close()
		}
		done <- err
	}()
	testwait.For(t, "three refusals logged", func() error {
		if n := strings.Count(logs.String(), "nats refused the connection; trying again"); n < 3 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	require.Contains(t, logs.String(), "why=\"NATS refused the credentials\"")
	require.NotContains(t, logs.String(), "wrong")
	cancel()
	err := testwait.Recv(t, done, "Connect to give up")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, nats.ErrAuthorization)
}

// TestServerFromConfigFile: the file's settings hold unless a field of
// ServerConfig overrides them; a file that does not parse is a config
// error.
func TestServerFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := dir + "/nats.conf"
	require.NoError(t, os.WriteFile(conf, []byte(`
listen: 127.0.0.1:-1
max_payload: 65536
authorization { token: "s3cret" }
cluster { name: from-file, listen: 127.0.0.1:-1 }
`), 0o600))
	s, err := bus.StartServer(bus.ServerConfig{ConfigFile: conf})
	require.NoError(t, err)
	defer s.Shutdown()
	require.NotEmpty(t, s.ClusterURL(), "the file's cluster block")
	_, err = nats.Connect(s.ClientURL(), nats.Token("wrong"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "the file's authorization")
	nc, err := nats.Connect(s.ClientURL(), nats.Token("s3cret"))
	require.NoError(t, err)
	require.EqualValues(t, 65536, nc.MaxPayload())
	nc.Close()

	port := testcluster.FreePort(t)
	s2, err := bus.StartServer(bus.ServerConfig{ConfigFile: conf, Host: "127.0.0.1", Port: port, MaxPayload: 1 << 20,
		Cluster: bus.ClusterConfig{Routes: []string{s.ClusterURL()}, Name: "from-file"}})
	require.NoError(t, err)
	defer s2.Shutdown()
	require.Equal(t, fmt.Sprintf("nats://127.0.0.1:%d", port), s2.ClientURL())
	testwait.For(t, "the route the flags name", func() error {
		if s2.NumRoutes() == 0 {
			return fmt.Errorf("no route yet")
		}
		return nil
	})
	nc, err = nats.Connect(s2.ClientURL(), nats.Token("s3cret"))
	require.NoError(t, err)
	require.EqualValues(t, 1<<20, nc.MaxPayload())
	nc.Close()

	require.NoError(t, os.WriteFile(conf, []byte("listen: [nonsense"), 0o600))
	_, err = bus.StartServer(bus.ServerConfig{ConfigFile: conf})
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
}
