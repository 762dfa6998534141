package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/metrics"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// nodeFlags are the flags of the commands that run a node.
type nodeFlags struct {
	Cluster      string        `help:"Cluster id." default:"${default_cluster}"`
	NodeID       string        `help:"Node id, unique among live nodes (default: host name + random suffix)." placeholder:"ID"`
	Name         string        `help:"Human-readable node name, shown by peers." placeholder:"N"`
	Locs         []string      `help:"The node's locs (resource tags), comma-separated." placeholder:"LOC"`
	Demo         bool          `help:"Also offer the demo functions: add, upper, sleep, fail, whoami, panic, blob, sha256, length, tally, flaky."`
	DrainTimeout time.Duration `help:"On SIGINT/SIGTERM, how long to wait for work in flight." default:"30s"`
	limitFlags
	objectFlags
	MetricsListen string `help:"Serve /metrics, /healthz and /readyz over HTTP on HOST:PORT (port 0 picks a free one; the address is logged)." placeholder:"HOST:PORT"`
	Authz         string `help:"Policy file (JSON) of which caller may run which function in the requests this node plans (docs/SECURITY.md); read again on SIGHUP. Default: everyone may run everything." placeholder:"FILE"`
	NoDelegate    bool   `help:"Run every step of the requests this node plans one by one, never sending a run of steps that only one other node can run there in one message."`
	NoLocality    bool   `help:"Route steps without regard to which node holds their inputs passed by reference (by default such a step goes to the node that made them, unless it is much busier)."`
	authFlags
}

// limitFlags are a node's limits (node.Limits). Their defaults are
// node.DefaultConfig's, through nodeVars.
type limitFlags struct {
	MaxInflight       int           `help:"Most steps that run on this node at once." default:"${max_inflight}"`
	MaxQueue          int           `help:"Most steps that wait for a run slot; beyond it a step gets OVERLOADED." default:"${max_queue}"`
	MaxCommands       int           `help:"Most commands one request may hold." default:"${max_commands}"`
	MaxRequests       int           `help:"Most whole requests this node plans at once; beyond it a request gets OVERLOADED." default:"${max_requests}"`
	MaxBytesInFlight  byteSize      `help:"Most bytes of steps this node's planner has in flight to other nodes (requests and the replies expected); more steps wait." default:"${max_bytes_in_flight}"`
	MaxPlanningBytes  byteSize      `help:"Memory for the requests this node plans at once (decoded bodies, held results, steps waiting for a route); beyond it a request gets OVERLOADED." default:"${max_planning_bytes}"`
	MaxResultBytes    byteSize      `help:"Most bytes of results one request holds at once; beyond it the request fails with PAYLOAD_TOO_LARGE." default:"${max_result_bytes}"`
	MaxWaiting        int           `help:"Most steps of the requests this node plans that wait for a route (route_wait_ms) at once; beyond it a request gets OVERLOADED." default:"${max_waiting}"`
	MaxDurableTimeout time.Duration `help:"Longest budget (timeout_ms) of a durable request, which survives its planner (docs/PROTOCOL.md §4.8)." default:"${max_durable_timeout}"`
	MaxResultTTL      time.Duration `help:"Longest a durable request's outcome is kept after it ends, for status and get (result_ttl_ms; also its default)." default:"${max_result_ttl}"`
}

// objectFlags are a node's settings for values passed by reference
// (node.Objects). Their defaults are node.DefaultConfig's, through
// nodeVars.
type objectFlags struct {
	InlineMax      byteSize      `help:"Largest result that travels inline; a larger one goes into the cluster's JetStream object bucket and travels as a reference (at most half the NATS max payload; without JetStream values pass inline up to the max payload)." default:"${inline_max}"`
	MaxObjectBytes byteSize      `help:"Largest value passed by reference, stored or fetched; beyond it a step fails with PAYLOAD_TOO_LARGE." default:"${max_object_bytes}"`
	ObjectCache    byteSize      `help:"Memory for the objects this node stored, so that a step run here on a value made here does not fetch it." default:"${object_cache}"`
	ObjectTTL      time.Duration `help:"Max age of the objects of the cluster's bucket, when this node creates it (a bucket that exists keeps its own): a backstop for objects nobody deleted." default:"${object_ttl}"`
	ResultTTL      time.Duration `help:"How long the objects of a request's results stay after its response, for the caller to read; the request's other objects are deleted when it ends." default:"${result_ttl}"`
	JSReplicas     int           `name:"js-replicas" help:"Replicas of the JetStream buckets this node creates (objects, durable requests), 1 to 5: 3 on a JetStream cluster of three or more servers keeps them through a server's loss." default:"1"`
}

// nodeVars are the defaults of the node flags, shown in --help: node.DefaultConfig's.
func nodeVars() kong.Vars {
	d := node.DefaultConfig()
	return kong.Vars{
		"default_cluster":     d.Cluster,
		"max_inflight":        strconv.Itoa(d.Limits.MaxInflight),
		"max_queue":           strconv.Itoa(d.Limits.MaxQueue),
		"max_commands":        strconv.Itoa(d.Limits.MaxCommands),
		"max_requests":        strconv.Itoa(d.Limits.MaxRequests),
		"max_bytes_in_flight": formatByteSize(d.Limits.MaxBytesInFlight),
		"max_planning_bytes":  formatByteSize(d.Limits.MaxPlanningBytes),
		"max_result_bytes":    formatByteSize(d.Limits.MaxResultBytes),
		"max_waiting":         strconv.Itoa(d.Limits.MaxWaiting),
		"inline_max":          formatByteSize(int64(d.Objects.InlineMax)),
		"max_object_bytes":    formatByteSize(d.Objects.MaxBytes),
		"object_cache":        formatByteSize(d.Objects.Cache),
		"object_ttl":          shortDuration(d.Objects.TTL),
		"result_ttl":          shortDuration(d.Objects.ResultTTL),
		"max_durable_timeout": shortDuration(d.Limits.MaxDurableTimeout),
		"max_result_ttl":      shortDuration(d.Limits.MaxResultTTL),
	}
}

// shortDuration writes d without its zero minutes and seconds: 1h, 10m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// limits returns the node.Limits the flags describe. --max-result-bytes at
// its default is left to node.Config's defaulting, which keeps it under a
// smaller --max-planning-bytes instead of refusing the pair.
func (f *limitFlags) limits() node.Limits {
	l := node.Limits{MaxInflight: f.MaxInflight, MaxQueue: f.MaxQueue, MaxCommands: f.MaxCommands, MaxRequests: f.MaxRequests,
		MaxBytesInFlight: int64(f.MaxBytesInFlight), MaxPlanningBytes: int64(f.MaxPlanningBytes), MaxResultBytes: int64(f.MaxResultBytes),
		MaxWaiting: f.MaxWaiting, MaxDurableTimeout: f.MaxDurableTimeout, MaxResultTTL: f.MaxResultTTL}
	if l.MaxResultBytes == node.DefaultConfig().Limits.MaxResultBytes {
		l.MaxResultBytes = 0
	}
	return l
}

// objects returns the node.Objects the flags describe.
func (f *objectFlags) objects() node.Objects {
	return node.Objects{InlineMax: int(f.InlineMax), MaxBytes: int64(f.MaxObjectBytes), Cache: int64(f.ObjectCache),
		TTL: f.ObjectTTL, ResultTTL: f.ResultTTL, Replicas: f.JSReplicas}
}

// Validate checks the ids and the NATS authentication flags.
func (f *nodeFlags) Validate() error {
	return errors.Join(checkIDs(f.Cluster, f.NodeID), f.check())
}

// config returns the node.Config the flags describe.
func (f *nodeFlags) config(log *slog.Logger) (node.Config, error) {
	var policy *authz.Policy
	if f.Authz != "" {
		var err error
		if policy, err = authz.Load(f.Authz); err != nil {
			return node.Config{}, err
		}
	}
	cfg := node.Config{Authz: policy, Cluster: f.Cluster, NodeID: f.NodeID, Name: f.Name, Locs: f.Locs,
		Limits: f.limits(), Objects: f.objects(), NoDelegate: f.NoDelegate, NoLocality: f.NoLocality, Hooks: node.Hooks{Logger: log}}
	return cfg, cfg.Validate() // before any server starts or connection is made
}

// serverCmd is `mpreg server`.
type serverCmd struct {
	NatsConfig      string   `help:"A nats-server configuration file (accounts, users, permissions, TLS, cluster, leafnodes); --listen and the route flags override what they name. The in-process node then needs an identity the file accepts (--user/--password, --token, --nkey or --creds)." placeholder:"FILE"`
	Listen          string   `help:"Client listen address (default 127.0.0.1:4222, or the --nats-config file's)." placeholder:"HOST:PORT"`
	RouteListen     string   `help:"Listen for routes from other NATS servers on HOST:PORT (turns on NATS clustering)." placeholder:"HOST:PORT"`
	Routes          []string `help:"Route URLs of other NATS servers, comma-separated (nats-route://host:port)." placeholder:"URL"`
	NatsClusterName string   `help:"NATS cluster name of the routed servers (default: mpreg-<cluster>)." placeholder:"NAME"`
	LeafnodeListen  string   `help:"Accept NATS leaf node connections from servers at other sites on HOST:PORT." placeholder:"HOST:PORT"`
	LeafnodeRemote  []string `help:"Join a hub's NATS cluster as a leaf node, at this URL (nats-leaf://[user:password@]host:7422); repeatable. The nodes here then serve, and reach, the whole cluster." placeholder:"URL"`
	LeafnodeCreds   string   `help:"JWT credentials file for the --leafnode-remote connections." placeholder:"FILE"`
	NoNode          bool     `help:"Run only the NATS server, no node."`
	jetStreamFlags
	nodeFlags
}

// jetStreamFlags are the embedded server's JetStream flags.
type jetStreamFlags struct {
	Store       string   `help:"JetStream's store directory, created (0700) on first use; one server per directory (default: $XDG_DATA_HOME/mpreg/<cluster>, or ~/.local/share/mpreg/<cluster>). A --nats-config file's own jetstream block wins over the JetStream flags." placeholder:"DIR"`
	NoJetstream bool     `help:"Run the NATS server without JetStream."`
	JsMaxStore  byteSize `help:"Most bytes JetStream keeps on disk (default: nats-server's, 75% of the free disk space)." placeholder:"SIZE"`
	JsMaxMem    byteSize `help:"Most bytes JetStream keeps in memory (default: nats-server's, 75% of the memory)." placeholder:"SIZE"`
}

// apply sets the JetStream fields of scfg for a server of cluster: on
// unless --no-jetstream, in --store or the default directory.
func (f *jetStreamFlags) apply(scfg *bus.ServerConfig, cluster string) error {
	if f.NoJetstream {
		return nil
	}
	dir := f.Store
	if dir == "" {
		var err error
		if dir, err = defaultStoreDir(cluster); err != nil {
			return usagef("--store: no default directory (%w); give --store DIR, or --no-jetstream", err)
		}
	}
	scfg.JetStream = bus.JetStreamConfig{Enabled: true, StoreDir: dir, MaxStore: int64(f.JsMaxStore), MaxMem: int64(f.JsMaxMem)}
	return nil
}

// defaultStoreDir is the per-user data directory of cluster:
// $XDG_DATA_HOME/mpreg/<cluster> when XDG_DATA_HOME is an absolute path
// (the XDG Base Directory rule), else ~/.local/share/mpreg/<cluster>.
func defaultStoreDir(cluster string) (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "mpreg", cluster), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "share", "mpreg", cluster), nil
}

// Run starts the server and the node, and serves until a signal.
func (c *serverCmd) Run(e *env) error {
	log := e.log
	cfg, err := c.config(log)
	if err != nil {
		return err
	}
	scfg, listen, err := c.serverConfig(e)
	if err != nil {
		return err
	}
	srv, err := bus.StartServer(scfg)
	if err != nil {
		if errors.Is(err, bus.ErrStoreInUse) {
			err = fmt.Errorf("%w; give each server on this host its own --store DIR", err)
		}
		if listen == "" {
			return fmt.Errorf("nats server: %w", err)
		}
		return fmt.Errorf("nats server on %s: %w", listen, err)
	}
	defer srv.Shutdown()
	attrs := []any{"url", srv.ClientURL()}
	if u := srv.ClusterURL(); u != "" {
		attrs = append(attrs, "route_url", u, "nats_cluster", scfg.Cluster.Name)
	}
	if u := srv.LeafURL(); u != "" {
		attrs = append(attrs, "leafnode_url", u)
	}
	if len(scfg.Leaf.Remotes) > 0 {
		attrs = append(attrs, "leafnode_remotes", bus.RedactAll(scfg.Leaf.Remotes))
	}
	log.Info("listening", attrs...)
	logJetStream(log, srv)
	if c.NoNode {
		if c.MetricsListen != "" {
			reg := metrics.NewRegistry()
			if err := metrics.WatchServer(reg, srv); err != nil {
				return err
			}
			stop, err := serveMetrics(log, c.MetricsListen, reg, metrics.Probes{})
			if err != nil {
				return err
			}
			defer stop()
		}
		<-e.ctx.Done()
		log.Info("shutting down")
		return nil
	}
	if c.NatsConfig != "" {
		if err := c.checkIdentity(e.ctx, srv); err != nil {
			return err
		}
	}
	// The in-process connection cannot drop, so it logs nothing. It needs
	// no TLS (nats-server does not ask it of in-process clients), only an
	// identity when the server requires one.
	auth := c.auth()
	auth.TLSCA, auth.TLSCert, auth.TLSKey = "", "", ""
	nc, err := bus.Connect(e.ctx, bus.ConnConfig{InProcess: srv.NATS(), Name: "mpreg-node", Auth: auth})
	if err != nil {
		return err
	}
	cfg.AdvertisedURLs = []string{srv.ClientURL()}
	return serve(e, log, nc, srv.ClientURL(), cfg, c.nodeFlags, srv)
}

// logJetStream says where the server's JetStream stores, and how much.
func logJetStream(log *slog.Logger, srv *bus.Server) {
	js, ok := srv.JetStream()
	if !ok {
		log.Info("JetStream off")
		return
	}
	// nats-server keeps its files in the "jetstream" subdirectory of the
	// directory it was given: name the one given.
	attrs := []any{"store", filepath.Dir(js.StoreDir), "max_store", roundByteSize(js.MaxStore), "max_mem", roundByteSize(js.MaxMem)}
	if srv.ClusterURL() != "" {
		attrs = append(attrs, "server_name", js.ServerName) // its JetStream peers know it by this name
	}
	log.Info("JetStream on", attrs...)
}

// serverConfig is the embedded server's configuration the flags describe,
// and the client listen address they name ("" to keep the --nats-config
// file's).
func (c *serverCmd) serverConfig(e *env) (bus.ServerConfig, string, error) {
	var err error
	scfg := bus.ServerConfig{ConfigFile: c.NatsConfig, Logger: e.natsLog,
		Cluster: bus.ClusterConfig{Routes: bus.SplitURLs(c.Routes...)},
		Leaf:    bus.LeafConfig{Remotes: bus.SplitURLs(c.LeafnodeRemote...), Creds: c.LeafnodeCreds}}
	if err := c.apply(&scfg, c.Cluster); err != nil {
		return scfg, "", err
	}
	if c.LeafnodeListen != "" {
		if scfg.Leaf.Host, scfg.Leaf.Port, err = bus.SplitHostPort(c.LeafnodeListen); err != nil {
			return scfg, "", usagef("--leafnode-listen: %w", err)
		}
	}
	listen := c.Listen
	if listen == "" && c.NatsConfig == "" {
		listen = "127.0.0.1:4222"
	}
	if listen != "" {
		if scfg.Host, scfg.Port, err = bus.SplitHostPort(listen); err != nil {
			return scfg, "", usagef("--listen: %w", err)
		}
	}
	if c.RouteListen != "" {
		if scfg.Cluster.Host, scfg.Cluster.Port, err = bus.SplitHostPort(c.RouteListen); err != nil {
			return scfg, "", usagef("--route-listen: %w", err)
		}
	}
	if scfg.Cluster.Port != 0 || len(scfg.Cluster.Routes) > 0 {
		scfg.Cluster.Name = c.NatsClusterName
		if scfg.Cluster.Name == "" {
			scfg.Cluster.Name = "mpreg-" + c.Cluster
		}
	}
	return scfg, listen, nil
}

// checkIdentity dials the server once over TCP with the in-process node's
// identity. A server that refuses an in-process connection and nats.go
// would both write to the pipe between them until the server's write
// deadline (10 s); over TCP the refusal is seen at once, with its reason.
// A failure that is not about the identity (a listener that wants TLS
// settings the flags do not give) is left to the in-process connection,
// which needs no TLS.
func (c *serverCmd) checkIdentity(ctx context.Context, srv *bus.Server) error {
	nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: []string{srv.ClientURL()}, Name: "mpreg-node-check", Auth: c.auth(), Options: oneShot})
	if err == nil {
		nc.Close()
		return nil
	}
	if bus.AuthError(err) {
		return schema.Wrap(schema.CodeUnauthenticated, err, "the --nats-config server refuses the in-process node's identity; give it one the file accepts (--user and --password, --token, --nkey or --creds)")
	}
	return nil
}

// nodeCmd is `mpreg node`.
type nodeCmd struct {
	Servers []string `help:"NATS server URLs, comma-separated." default:"${default_url}"`
	nodeFlags
}

// Run connects to NATS and serves until a signal.
func (c *nodeCmd) Run(e *env) error {
	log := e.log
	cfg, err := c.config(log)
	if err != nil {
		return err
	}
	servers := bus.SplitURLs(c.Servers...)
	log.Info("connecting", "servers", bus.RedactAll(servers))
	nc, err := bus.Connect(e.ctx, bus.ConnConfig{Servers: servers, Name: "mpreg-node", Logger: log, Auth: c.auth()})
	if err != nil {
		return err
	}
	return serve(e, log, nc, bus.Redact(nc.ConnectedUrl()), cfg, c.nodeFlags, nil)
}

// startTimeout bounds a node's start: subscribing, the first sync with the
// cluster and the first flush.
const startTimeout = 10 * time.Second

// serve runs a node on nc (which reaches NATS at url) until the first
// SIGINT or SIGTERM, then drains it (bounded by --drain-timeout), flushes
// and closes nc. It owns nc. SIGHUP reads the --authz policy again.
func serve(e *env, log *slog.Logger, nc *nats.Conn, url string, cfg node.Config, f nodeFlags, srv *bus.Server) error {
	withDemo, drainTimeout := f.Demo, f.DrainTimeout
	defer nc.Close()
	var reg *prometheus.Registry
	if f.MetricsListen != "" {
		reg = metrics.NewRegistry()
		rec, err := metrics.NewRecorder(reg)
		if err != nil {
			return err
		}
		cfg.Hooks.Recorder = rec
	}
	n, err := node.New(nc, cfg)
	if err != nil {
		return err
	}
	if withDemo {
		if err := demo.Register(n); err != nil {
			return err
		}
	}
	if reg != nil {
		stop, err := watch(log, f.MetricsListen, reg, n, nc, srv)
		if err != nil {
			return err
		}
		defer stop()
	}
	sctx, cancel := context.WithTimeout(e.ctx, startTimeout)
	err = n.Start(sctx)
	cancel()
	if err != nil {
		return err
	}
	log.Info("node serving", "node", n.ID(), "cluster", n.Cluster(), "url", url, "demo", withDemo, "authz", f.Authz)
	defer reloadOnHangup(log, n, f.Authz)()
	select {
	case <-e.ctx.Done():
	case <-n.Done():
		// Stopped on its own: its connection was closed for good.
		return fmt.Errorf("node %s stopped: %w", n.ID(), n.Err())
	}
	log.Info("shutting down: draining", "timeout", drainTimeout)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), drainTimeout)
	defer cancel()
	if err := n.Drain(ctx); err != nil {
		log.Warn("drain did not finish; work in flight was cancelled", "error", err)
	}
	if nc.IsConnected() {
		if err := nc.FlushWithContext(ctx); err != nil {
			log.Debug("flush before close", "error", err)
		}
	}
	log.Info("stopped")
	return nil
}

// reloadOnHangup reads the policy file again on each SIGHUP and gives it to
// n; a file that does not parse keeps the policy in force, and the log says
// why. The returned function stops it.
func reloadOnHangup(log *slog.Logger, n *node.Node, path string) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() { // owned: stop ends it and waits
		defer close(exited)
		for {
			select {
			case <-hup:
			case <-done:
				return
			}
			if path == "" {
				log.Info("SIGHUP: no --authz policy to read again")
				continue
			}
			p, err := authz.Load(path)
			if err != nil {
				log.Error("SIGHUP: policy not reloaded; the previous one stays in force", "authz", path, "error", err)
				continue
			}
			n.SetAuthz(p)
			log.Info("SIGHUP: policy reloaded", "authz", path, "rules", len(p.Rules), "default", p.Default, "local", p.Local)
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-exited
	}
}

// watch registers the gauges of n, nc and srv (when not nil) with reg and
// serves them with the probes of n; stop ends the HTTP server.
func watch(log *slog.Logger, addr string, reg *prometheus.Registry, n *node.Node, nc *nats.Conn, srv *bus.Server) (stop func(), err error) {
	if err := metrics.WatchNode(reg, n); err != nil {
		return nil, err
	}
	if err := metrics.WatchConn(reg, nc); err != nil {
		return nil, err
	}
	if srv != nil {
		if err := metrics.WatchServer(reg, srv); err != nil {
			return nil, err
		}
	}
	return serveMetrics(log, addr, reg, metrics.Probes{
		Live: func() error {
			if !nc.IsConnected() {
				return errors.New("NATS connection down")
			}
			return nil
		},
		Ready: n.Ready,
	})
}

// serveMetrics serves reg and the probes on addr until stop.
func serveMetrics(log *slog.Logger, addr string, reg *prometheus.Registry, p metrics.Probes) (stop func(), err error) {
	ms, err := metrics.Serve(addr, reg, p, log)
	if err != nil {
		return nil, usagef("--metrics-listen: %w", err)
	}
	log.Info("metrics listening", "url", "http://"+ms.Addr()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := ms.Close(ctx); err != nil {
			log.Debug("metrics server close", "error", err)
		}
	}, nil
}
