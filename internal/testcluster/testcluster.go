// Package testcluster starts real embedded nats-servers, nodes and clients on
// loopback for tests, with wait-verbs that poll with a deadline instead of
// sleeping.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/node"
)

// Timeout bounds every wait in this package.
const Timeout = 10 * time.Second

// Logger returns an slog logger writing to t.Log at debug level.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// FreePort returns a loopback port that was free a moment ago, for a test
// that must name its ports (a server restarted on the same address).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// ServerOption adjusts the configuration of a test server.
type ServerOption func(*bus.ServerConfig)

// WithServerConfig starts the server with cfg (for example a small
// MaxPayload), on a random loopback port unless cfg says otherwise.
func WithServerConfig(cfg bus.ServerConfig) ServerOption {
	return func(c *bus.ServerConfig) { *c = cfg }
}

// WithJetStream turns JetStream on, storing under dir (a t.TempDir()).
func WithJetStream(dir string) ServerOption {
	return func(c *bus.ServerConfig) { c.JetStream = bus.JetStreamConfig{Enabled: true, StoreDir: dir} }
}

// Server starts an embedded nats-server on a random loopback port, and
// shuts it down at cleanup.
func Server(t testing.TB, opts ...ServerOption) *bus.Server {
	t.Helper()
	var cfg bus.ServerConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	s, err := bus.StartServer(cfg)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Cluster starts n nats-servers routed to each other and waits for the
// routes.
func Cluster(t testing.TB, n int) []*bus.Server {
	t.Helper()
	return routed(t, n, func(i int, out []*bus.Server) bus.ServerConfig {
		cfg := bus.ServerConfig{Host: "127.0.0.1", Port: -1,
			Cluster: bus.ClusterConfig{Name: "test", Host: "127.0.0.1", Port: -1}}
		if i > 0 {
			cfg.Cluster.Routes = []string{out[0].ClusterURL()}
		}
		return cfg
	})
}

// routed starts n nats-servers, the i-th with config(i, the ones started
// before it), and waits until each has a route to every other.
func routed(t testing.TB, n int, config func(i int, out []*bus.Server) bus.ServerConfig) []*bus.Server {
	t.Helper()
	var out []*bus.Server
	for i := range n {
		s, err := bus.StartServer(config(i, out))
		if err != nil {
			t.Fatalf("start nats-server %d: %v", i, err)
		}
		t.Cleanup(s.Shutdown)
		out = append(out, s)
	}
	WaitFor(t, "routes between servers", func() error {
		for i, s := range out {
			if s.NumRoutes() < n-1 {
				return fmt.Errorf("server %d has %d routes", i, s.NumRoutes())
			}
		}
		return nil
	})
	return out
}

// JetStreamCluster starts n nats-servers with JetStream, each storing in a
// t.TempDir() of its own, routed to each other (each lists every route,
// as clustered JetStream needs), and waits for the routes, not for
// JetStream to elect its meta leader.
func JetStreamCluster(t testing.TB, n int) []*bus.Server {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = FreePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	return routed(t, n, func(i int, _ []*bus.Server) bus.ServerConfig {
		return bus.ServerConfig{Host: "127.0.0.1", Port: -1,
			Cluster:   bus.ClusterConfig{Name: "test-js", Host: "127.0.0.1", Port: ports[i], Routes: routes},
			JetStream: bus.JetStreamConfig{Enabled: true, StoreDir: t.TempDir()}}
	})
}

// ConnOption adjusts the configuration of a test connection.
type ConnOption func(*bus.ConnConfig)

// WithConnConfig connects with cfg (servers, reconnect timings, extra
// options) instead of the defaults.
func WithConnConfig(cfg bus.ConnConfig) ConnOption {
	return func(c *bus.ConnConfig) { *c = cfg }
}

// Conn connects to url (or as an option says), logging warnings to the
// test, and closes the connection at cleanup.
func Conn(t testing.TB, url string, opts ...ConnOption) *nats.Conn {
	t.Helper()
	cfg := bus.ConnConfig{Servers: []string{url}, ReconnectWait: 20 * time.Millisecond, Logger: LevelLogger(t, slog.LevelWarn)}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	nc, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %v: %v", cfg.Servers, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// NodeConfig is a node.Config with short test timings.
func NodeConfig(t testing.TB, id string, locs ...string) node.Config {
	return node.Config{
		NodeID: id,
		Locs:   locs,
		Gossip: node.Gossip{HeartbeatInterval: 100 * time.Millisecond, SyncQuiet: 50 * time.Millisecond},
		Hooks:  node.Hooks{Logger: Logger(t).With("test_node", id)},
	}
}

// Node starts a node on url with cfg, calls register before starting it,
// and closes it at cleanup.
func Node(t testing.TB, url string, cfg node.Config, register func(*node.Node)) *node.Node {
	t.Helper()
	return StartNode(t, Conn(t, url), cfg, register)
}

// Client connects a following client to url and closes it at cleanup.
func Client(t testing.TB, url string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Dial.Servers = []string{url}
	if cfg.SyncQuiet == 0 {
		cfg.SyncQuiet = 50 * time.Millisecond
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 300 * time.Millisecond // 3 heartbeats of NodeConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, err := client.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("client.Connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// WaitFor polls check every 5 ms until it returns nil, failing the test with
// the last error after Timeout (see testwait.For).
func WaitFor(t testing.TB, what string, check func() error) {
	t.Helper()
	testwait.For(t, what, check)
}

// WaitForRoute waits until table routes fun with locs to one of nodes (any
// node when nodes is empty).
func WaitForRoute(t testing.TB, table *membership.Table, fun string, locs []string, nodes ...string) {
	t.Helper()
	WaitFor(t, fmt.Sprintf("a route for %s %v", fun, locs), func() error {
		el := table.Eligible(fun, locs)
		if len(nodes) == 0 && len(el) > 0 {
			return nil
		}
		for _, want := range nodes {
			found := false
			for _, e := range el {
				if e == want {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("eligible %v, want %v", el, nodes)
			}
		}
		if len(nodes) > 0 {
			return nil
		}
		return fmt.Errorf("no eligible node")
	})
}

// WaitForGone waits until table no longer lists node (it said goodbye or
// was forgotten).
func WaitForGone(t testing.TB, table *membership.Table, node string) {
	t.Helper()
	WaitFor(t, fmt.Sprintf("node %s to leave the table", node), func() error {
		if p, ok := table.Get(node); ok {
			return fmt.Errorf("node %s still listed (alive %v)", node, p.Alive)
		}
		return nil
	})
}

// WaitForNoRoute waits until table routes fun with locs to no node.
func WaitForNoRoute(t testing.TB, table *membership.Table, fun string, locs []string) {
	t.Helper()
	WaitFor(t, fmt.Sprintf("no route for %s %v", fun, locs), func() error {
		if el := table.Eligible(fun, locs); len(el) > 0 {
			return fmt.Errorf("still eligible: %v", el)
		}
		return nil
	})
}

// StartNode creates a node on nc, which the caller owns, calls register
// before starting it, and closes the node at cleanup.
func StartNode(t testing.TB, nc *nats.Conn, cfg node.Config, register func(*node.Node)) *node.Node {
	t.Helper()
	n, err := node.New(nc, cfg)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if register != nil {
		register(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("node start: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// LevelLogger returns an slog logger writing records at level and above to
// t.Log. Records that arrive once the test's cleanups are over (from
// callbacks that outlive a closed connection) are dropped instead of
// panicking.
func LevelLogger(t testing.TB, level slog.Leveler) *slog.Logger {
	w := &guardedWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type guardedWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *guardedWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

func (w *guardedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// Fixture is a NATS server with MPREG nodes on it that a test starts,
// stops and restarts by name, each node on its own connection, as
// separate processes would be.
type Fixture struct {
	t      testing.TB
	Server *bus.Server
	mu     sync.Mutex
	nodes  map[string]*fixtureNode
}

type fixtureNode struct {
	cfg      node.Config
	register func(*node.Node)
	nc       *nats.Conn
	n        *node.Node
}

// NodeOption adjusts the configuration of a fixture's node.
type NodeOption func(*node.Config)

// WithLocs gives the node locs.
func WithLocs(locs ...string) NodeOption { return func(c *node.Config) { c.Locs = locs } }

// NewFixture starts a server for a test's nodes.
func NewFixture(t testing.TB, opts ...ServerOption) *Fixture {
	t.Helper()
	return &Fixture{t: t, Server: Server(t, opts...), nodes: map[string]*fixtureNode{}}
}

// AddNode starts node id (NodeConfig's test timings, then opts), calling
// register before it starts; RestartNode calls register again.
func (f *Fixture) AddNode(id string, register func(*node.Node), opts ...NodeOption) *node.Node {
	f.t.Helper()
	cfg := NodeConfig(f.t, id)
	for _, o := range opts {
		o(&cfg)
	}
	fn := &fixtureNode{cfg: cfg, register: register}
	f.start(fn)
	f.mu.Lock()
	f.nodes[id] = fn
	f.mu.Unlock()
	return fn.n
}

func (f *Fixture) start(fn *fixtureNode) {
	f.t.Helper()
	fn.nc = Conn(f.t, f.Server.ClientURL())
	fn.n = StartNode(f.t, fn.nc, fn.cfg, fn.register)
}

// Node returns the running node id.
func (f *Fixture) Node(id string) *node.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id].n
}

// StopNode ends node id as a dying process does: its connection closes
// first (no goodbye, no reply to the steps it runs), then the node.
func (f *Fixture) StopNode(id string) {
	f.mu.Lock()
	fn := f.nodes[id]
	f.mu.Unlock()
	fn.nc.Close()
	fn.n.Close()
}

// RestartNode starts node id again as a new process: the same
// configuration and functions, a new incarnation.
func (f *Fixture) RestartNode(id string) *node.Node {
	f.t.Helper()
	f.mu.Lock()
	fn := f.nodes[id]
	f.mu.Unlock()
	f.start(fn)
	return fn.n
}

// WaitForFunction waits until every running node of the fixture routes
// fun with locs to some node.
func (f *Fixture) WaitForFunction(fun string, locs ...string) {
	f.t.Helper()
	f.mu.Lock()
	var running []*node.Node
	for _, fn := range f.nodes {
		select {
		case <-fn.n.Done():
		default:
			running = append(running, fn.n)
		}
	}
	f.mu.Unlock()
	for _, n := range running {
		WaitForRoute(f.t, n.Table(), fun, locs)
	}
}
