package bus

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded nats-server. Zero fields take the
// defaults named in their comments.
type ServerConfig struct {
	// ConfigFile, when set, is a nats-server configuration file (accounts,
	// users, permissions, TLS, cluster, leafnodes…), read with the server's
	// own parser. The fields below that are set override what it says;
	// those left zero keep the file's values (or nats-server's defaults).
	ConfigFile string
	// Host is the client listen address. Default 127.0.0.1.
	Host string
	// Port is the client port; -1 picks a free one. Default -1.
	Port int
	// MaxPayload is the largest message in bytes. Default 1 MiB (NATS').
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept clients.
	// Default 10 s.
	ReadyTimeout time.Duration
	// Logger receives the server's log. Default: discard.
	Logger *slog.Logger
	// Cluster joins this server to other servers of its site by routes.
	Cluster ClusterConfig
	// Leaf links this server to servers at other sites as leaf nodes.
	Leaf LeafConfig
	// JetStream turns on the persistent store.
	JetStream JetStreamConfig
}

// ClusterConfig is a server's clustering (nats-server's cluster block).
// Clustering is on when Port is not 0 or Routes is not empty.
type ClusterConfig struct {
	// Name is the cluster's name. Default: the ConfigFile's, else "mpreg".
	Name string
	// Host and Port are where other servers connect by route (-1 picks a
	// free port). Default: the ConfigFile's, else the client Host and -1.
	Host string
	Port int
	// Routes are the route URLs (nats-route://host:port) of other servers.
	Routes []string
	// NoAdvertise keeps this server from telling clients about the other
	// servers of its cluster (nats-server's cluster no_advertise).
	NoAdvertise bool
}

// LeafConfig is a server's leaf node links (nats-server's leafnodes block).
type LeafConfig struct {
	// Host and Port, when Port is not 0, accept leaf node connections from
	// servers at other sites (-1 picks a free port).
	Host string
	Port int
	// Remotes are hub servers' leaf node URLs (nats-leaf://host:7422, user
	// info allowed) this server connects to as a leaf node: its clients and
	// the hub's then reach each other's subjects.
	Remotes []string
	// Creds is a JWT credentials file for the leaf connections.
	Creds string
}

// JetStreamConfig is a server's JetStream store. A ConfigFile with a
// jetstream block of its own decides instead (on or off, where and how
// much): these fields are then ignored. See StartServer for the store's
// lock and the server name.
type JetStreamConfig struct {
	// Enabled turns JetStream on, storing under StoreDir.
	Enabled bool
	// StoreDir is JetStream's directory, created (0700) when missing;
	// nats-server keeps its files in its "jetstream" subdirectory.
	// Required with Enabled, unless ConfigFile names a store_dir.
	StoreDir string
	// MaxStore and MaxMem cap the bytes JetStream keeps on disk and in
	// memory. 0: nats-server's defaults (75% of the free disk space, 75%
	// of the memory).
	MaxStore int64
	MaxMem   int64
}

// Server is an embedded nats-server.
type Server struct {
	s      *server.Server
	unlock func() // releases the store's lock; nil without one
}

// SplitHostPort parses "HOST:PORT" (PORT may be -1 or 0 for a free port).
func SplitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q: %w", ErrInvalidConfig, hp, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < -1 || n > 65535 {
		return "", 0, fmt.Errorf("%w: %q: bad port", ErrInvalidConfig, hp)
	}
	if n == 0 {
		n = -1
	}
	return h, n, nil
}

// StartServer starts an embedded nats-server and waits until it accepts
// clients.
//
// With JetStream (cfg.JetStream.Enabled, or the ConfigFile's own
// jetstream block) the server holds an exclusive lock on its store
// directory while it runs (on Unix; ErrStoreInUse when another process
// holds it), because two servers writing one store corrupt it. A clustered
// server with JetStream needs a server name that is unique in its NATS
// cluster and stays the same across restarts (its JetStream peers know it
// by that name): unless the ConfigFile names one, it is read from the
// store's "server_name" file, which the first start writes.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	unlock, err := prepareStore(opts)
	if err != nil {
		return nil, err
	}
	srv, err := startServer(cfg, opts)
	if err != nil {
		unlock()
		return nil, err
	}
	srv.unlock = unlock
	return srv, nil
}

// startServer starts the server opts describe.
func startServer(cfg ServerConfig, opts *server.Options) (*Server, error) {
	// A fixed port that is taken fails here at once; nats-server would only
	// log it and never become ready.
	if err := checkFree(opts.Host, opts.Port, "client"); err != nil {
		return nil, err
	}
	if opts.Cluster.Port != 0 {
		if err := checkFree(opts.Cluster.Host, opts.Cluster.Port, "route"); err != nil {
			return nil, err
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(slogAdapter{cfg.Logger.With("component", "nats-server")}, false, false, false)
	}
	go s.Start() // owned by the server: Shutdown stops and waits for it
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("bus: embedded server did not become ready (is the port free?)")
	}
	return &Server{s: s}, nil
}

// options are the nats-server options cfg describes: the file's, if any,
// with the fields cfg sets put over them.
func (cfg ServerConfig) options() (*server.Options, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("%w: nats config: %w", ErrInvalidConfig, err)
		}
	} else {
		cfg.Host = cmp.Or(cfg.Host, "127.0.0.1")
		cfg.Port = cmp.Or(cfg.Port, -1)
	}
	opts.NoSigs = true // the process that embeds the server owns the signals
	opts.NoLog = cfg.Logger == nil
	if cfg.Host != "" {
		opts.Host = cfg.Host
	}
	if cfg.Port != 0 {
		opts.Port = cfg.Port
	}
	if cfg.MaxPayload != 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if cfg.Cluster.Port != 0 || len(cfg.Cluster.Routes) > 0 {
		opts.Cluster.Host = cmp.Or(cfg.Cluster.Host, opts.Cluster.Host, opts.Host, "127.0.0.1")
		opts.Cluster.Port = cmp.Or(cfg.Cluster.Port, opts.Cluster.Port, -1)
		opts.Cluster.Name = cmp.Or(cfg.Cluster.Name, opts.Cluster.Name, "mpreg")
		opts.Cluster.NoAdvertise = opts.Cluster.NoAdvertise || cfg.Cluster.NoAdvertise
		if routes := SplitURLs(cfg.Cluster.Routes...); len(routes) > 0 {
			opts.Routes = nil
			for _, r := range routes {
				opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
			}
		}
	}
	if err := cfg.leafOptions(opts); err != nil {
		return nil, err
	}
	if err := cfg.jetStreamOptions(opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// leafOptions sets the leaf node listener and remotes cfg names.
func (cfg ServerConfig) leafOptions(opts *server.Options) error {
	if cfg.Leaf.Port != 0 {
		opts.LeafNode.Host = cmp.Or(cfg.Leaf.Host, opts.Host, "127.0.0.1")
		opts.LeafNode.Port = cfg.Leaf.Port
	}
	for _, raw := range SplitURLs(cfg.Leaf.Remotes...) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: leaf node remote %s: not a URL", ErrInvalidConfig, Redact(raw))
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{u}, Credentials: cfg.Leaf.Creds})
	}
	return nil
}

// NumLeafNodes is the number of leaf node connections, either way.
func (s *Server) NumLeafNodes() int { return s.s.NumLeafNodes() }

// LeafURL is the URL leaf nodes connect to; "" when not listening for them.
func (s *Server) LeafURL() string {
	v, err := s.s.Varz(nil)
	if err != nil || v.LeafNode.Port <= 0 {
		return ""
	}
	return "nats-leaf://" + net.JoinHostPort(v.LeafNode.Host, strconv.Itoa(v.LeafNode.Port))
}

// checkFree reports whether a fixed port can be listened on now (a port of
// -1 is picked by the server and always free).
func checkFree(host string, port int, what string) error {
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bus: %s listen address %s: %w", what, addr, err)
	}
	return l.Close()
}

// NATS returns the underlying server, e.g. for ConnConfig.InProcess.
func (s *Server) NATS() *server.Server { return s.s }

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.s.ClientURL() }

// ClusterURL is the route URL other servers list in Routes; "" when not
// clustered.
func (s *Server) ClusterURL() string {
	a := s.s.ClusterAddr()
	if a == nil {
		return ""
	}
	return fmt.Sprintf("nats-route://%s", a.String())
}

// ServerStats are an embedded server's own counters.
type ServerStats struct {
	Connections     int   // clients connected now
	InMsgs, OutMsgs int64 // messages received and sent since start
}

// Stats reads the server's counters.
func (s *Server) Stats() ServerStats {
	v, err := s.s.Varz(nil)
	if err != nil {
		return ServerStats{}
	}
	return ServerStats{Connections: v.Connections, InMsgs: v.InMsgs, OutMsgs: v.OutMsgs}
}

// NumRoutes is the number of routes to other servers.
func (s *Server) NumRoutes() int { return s.s.NumRoutes() }

// Shutdown stops the server and waits for it. It is idempotent. Before it
// closes the clients' connections it waits, for at most flushWait, until
// what the server holds for them has been written to them: a reply that a
// node sent just before would otherwise be lost with the connection.
func (s *Server) Shutdown() {
	if s == nil {
		return
	}
	s.flushClients(flushWait)
	s.s.Shutdown()
	s.s.WaitForShutdown()
	if s.unlock != nil {
		s.unlock()
	}
}

// flushWait bounds Shutdown's wait for the clients' pending data.
const flushWait = 2 * time.Second

// flushClients waits until no client connection has data pending in the
// server, or until wait has passed.
func (s *Server) flushClients(wait time.Duration) {
	if !s.s.Running() {
		return
	}
	deadline := time.Now().Add(wait)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		cz, err := s.s.Connz(&server.ConnzOptions{Limit: 1 << 16})
		if err != nil {
			return
		}
		pending := 0
		for _, c := range cz.Conns {
			pending += c.Pending
		}
		if pending == 0 || time.Now().After(deadline) {
			return
		}
		<-t.C
	}
}

// slogAdapter is the 6-method server.Logger over slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Info(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
