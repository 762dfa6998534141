// Command mpreg runs MPREG nodes and an embedded NATS server, and calls an
// MPREG cluster from the shell.
//
//	mpreg server --demo                 # NATS on 127.0.0.1:4222 plus a node
//	mpreg call add 2 3                  # 5
//	mpreg run request.json              # a whole dependency graph
//	mpreg submit request.json           # the same, durable: prints its id
//	mpreg get ID --wait                 # its response, once it ended
//	mpreg peers                         # the live nodes
//	mpreg demo                          # a tour, all in one process
//
// Every flag also reads MPREG_<FLAG> from the environment (MPREG_SERVERS,
// MPREG_CLUSTER, MPREG_NODE_ID, …) and, with --config FILE, a JSON object of
// flag values ({"servers": "nats://10.0.0.5:4222", "node_id": "n1"}). A flag
// on the command line wins over the environment, which wins over the file.
//
// Exit codes: 0 success, 1 an RPC or runtime error (printed on stderr as
// "CODE: message"), 2 a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/authz"
	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// cli is the command line.
type cli struct {
	globalFlags

	Server      serverCmd  `cmd:"" help:"Run an embedded NATS server and, unless --no-node, a node in the same process."`
	Node        nodeCmd    `cmd:"" help:"Run a node connected to existing NATS servers."`
	Call        callCmd    `cmd:"" help:"Call one function and print its result as JSON."`
	Run         runCmd     `cmd:"" help:"Send a whole request (docs/PROTOCOL.md §4) from a JSON file or stdin and print the response."`
	Peers       peersCmd   `cmd:"" help:"List the live nodes, their functions, locs and codecs."`
	Cancel      cancelCmd  `cmd:"" help:"Stop a request by its id, wherever it runs (its caller gets CANCELLED)."`
	durableCmds            // submit, status, get
	Objects     objectsCmd `cmd:"" help:"List or delete the objects of the cluster's JetStream object bucket, where values too big for a message pass by reference."`
	Demo        demoCmd    `cmd:"" help:"Run a tour of MPREG in one process: a NATS server, three nodes and a client."`
	Bench       benchCmd   `cmd:"" help:"Measure calls per second and latency."`

	VersionCmd versionCmd    `cmd:"" name:"version" help:"Print the version, the commit it was built from and the Go version."`
	Completion completionCmd `cmd:"" help:"Print a shell completion script: bash, zsh or fish."`
}

// globalFlags are the flags of every command.
type globalFlags struct {
	Version   kong.VersionFlag `help:"Print the version and exit." env:"-"`
	LogLevel  string           `help:"Log level: debug, info, warn or error." enum:"debug,info,warn,error" default:"info"`
	LogFormat string           `help:"Log format: text or json (one JSON object per line)." enum:"text,json" default:"text"`
	Config    kong.ConfigFlag  `help:"Read flag values from a JSON file, e.g. {\"servers\": \"nats://10.0.0.5:4222\", \"node_id\": \"n1\"}." placeholder:"FILE"`
}

// env is what every command's Run gets: the process's context (cancelled
// by the first SIGINT or SIGTERM) and its standard streams.
type env struct {
	ctx     context.Context
	log     *slog.Logger // on stderr, at --log-level, in --log-format
	natsLog *slog.Logger // the embedded nats-server's: its notices only at debug level
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// usageError is a user mistake found after parsing (an unreadable file, bad
// JSON, a bad flag value): exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signalContext(os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM;
// a second signal exits the process at once with status 1. stop releases
// the signal handler.
func signalContext(stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "mpreg: second signal (%s), exiting now\n", s)
			os.Exit(exitError)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		<-exited
		cancel()
	}
}

// run parses args, runs the chosen command and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var c cli
	parser, err := newParser(&c, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mpreg: %v\n", err)
		return exitUsage
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "mpreg: error: %v\n", err)
		fmt.Fprintln(stderr, `Run "mpreg --help" or "mpreg COMMAND --help" for usage.`)
		return exitUsage
	}
	err = kctx.Run(&env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr,
		log: newLogger(stderr, c.LogFormat, c.LogLevel), natsLog: natsLogger(stderr, c.LogFormat, c.LogLevel)})
	return report(err, stderr)
}

// newParser returns the command line's parser, filling c. The flags'
// defaults come from the packages' (kong.Vars), written there once.
func newParser(c *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("mpreg"),
		kong.Description("MPREG: dependency-resolving RPC over NATS."),
		kong.Vars{"version": versionLine(), "default_url": bus.DefaultURL},
		benchVars(),
		nodeVars(),
		kong.DefaultEnvars("MPREG"),
		kong.Configuration(configLoader),
		kong.Writers(stdout, stderr),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
}

// report prints err and returns its exit code: RPC errors print as
// "CODE: message (step …)".
func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, node.ErrInvalidConfig) || errors.Is(err, bus.ErrInvalidConfig) || errors.Is(err, client.ErrInvalidConfig) || errors.Is(err, mesh.ErrInvalidConfig) || errors.Is(err, authz.ErrInvalidPolicy) {
		fmt.Fprintf(stderr, "mpreg: error: %v\n", err)
		return exitUsage
	}
	var se *schema.Error
	if errors.As(err, &se) {
		fmt.Fprintln(stderr, se.Error())
		return exitError
	}
	fmt.Fprintf(stderr, "mpreg: %v\n", err)
	return exitError
}

// configLoader reads a --config JSON file. A flag whose environment
// variable is set keeps the environment's value: the command line wins over
// the environment, which wins over the file. A key that names no flag of
// any command is an error.
func configLoader(r io.Reader) (kong.Resolver, error) {
	name := "config file"
	if f, ok := r.(interface{ Name() string }); ok {
		name = "config file " + f.Name()
	}
	values := map[string]any{}
	if err := json.NewDecoder(r).Decode(&values); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object of flag values: %w", name, err)
	}
	return &configResolver{name: name, values: values}, nil
}

// configResolver resolves flags from a config file's values, keyed by the
// flag's name with "-" or "_" ("node-id" or "node_id").
type configResolver struct {
	name   string
	values map[string]any
}

func (c *configResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			for _, k := range configKeys(f.Name) {
				known[k] = true
			}
		}
		for _, ch := range n.Children {
			walk(ch)
		}
	}
	walk(app.Node)
	for k := range c.values {
		if !known[k] {
			return fmt.Errorf("%s: %q is not a flag of mpreg", c.name, k)
		}
	}
	return nil
}

func (c *configResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	for _, name := range flag.Envs {
		if _, ok := os.LookupEnv(name); ok {
			return nil, nil
		}
	}
	for _, k := range configKeys(flag.Name) {
		if v, ok := c.values[k]; ok {
			return v, nil
		}
	}
	return nil, nil
}

// configKeys are the keys a config file may use for a flag: "node-id",
// "node_id" or "nodeId".
func configKeys(flag string) []string {
	parts := strings.Split(flag, "-")
	camel := parts[0]
	for _, p := range parts[1:] {
		if p != "" {
			camel += strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return []string{flag, strings.Join(parts, "_"), camel}
}

// clientFlags are the flags of the commands that call a cluster.
type clientFlags struct {
	Servers []string `help:"NATS server URLs, comma-separated." default:"${default_url}"`
	Cluster string   `help:"Cluster id." default:"${default_cluster}"`
	authFlags
	inboxFlags
}

// Validate checks the cluster id and the NATS authentication flags.
func (f *clientFlags) Validate() error {
	return errors.Join(checkIDs(f.Cluster, ""), f.check())
}

// requestFlags are the flags of the commands that send a request.
type requestFlags struct {
	Timeout time.Duration `help:"Budget for connecting and the whole request." default:"30s"`
	Codec   string        `help:"Codec of the request: json or msgpack." enum:"json,msgpack" default:"msgpack"`
}

// connect dials the cluster as a one-shot client: no membership following,
// no retrying a first connect that fails.
func connect(ctx context.Context, f clientFlags, codecName string, timeout time.Duration) (*client.Client, error) {
	return dial(ctx, f, codecName, timeout, false)
}

// dial connects as connect does; follow keeps a membership view (for
// peers --watch).
func dial(ctx context.Context, f clientFlags, codecName string, timeout time.Duration, follow bool) (*client.Client, error) {
	c := codec.MsgPack
	if codecName == "json" {
		c = codec.JSON
	}
	cl, err := client.Connect(ctx, client.Config{
		Dial: bus.ConnConfig{Servers: bus.SplitURLs(f.Servers...), Auth: f.auth(), InboxPrefix: f.InboxPrefix,
			Name: "mpreg-cli", Options: oneShot},
		Cluster:  f.Cluster,
		Codec:    c,
		Timeout:  timeout,
		NoFollow: !follow,
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, client.ErrInvalidConfig) {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(bus.RedactAll(f.Servers), ","), ctx.Err())
	}
	// client.Connect's errors are typed: NODE_UNAVAILABLE "cannot reach
	// NATS at …", UNAUTHENTICATED, or a configuration error.
	return cl, err
}

// oneShot are the connection options of a process that tries once: a
// connection refused (credentials, TLS, nothing listening) fails at once.
var oneShot = []nats.Option{nats.RetryOnFailedConnect(false), nats.MaxReconnects(0)}

// newLogger returns a logger on w in format ("text" or "json") at level
// ("debug", "info", "warn", "error").
func newLogger(w io.Writer, format, level string) *slog.Logger {
	return slog.New(handler(w, format, parseLevel(level)))
}

// natsLogger is the embedded server's logger: its notices only at debug
// level, its warnings and errors always.
func natsLogger(w io.Writer, format, level string) *slog.Logger {
	l := parseLevel(level)
	if l > slog.LevelDebug {
		l = max(l, slog.LevelWarn)
	}
	return slog.New(handler(w, format, l))
}

func handler(w io.Writer, format string, l slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

func parseLevel(level string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// checkIDs checks cluster and node ids given on the command line.
func checkIDs(cluster, nodeID string) error {
	if err := schema.CheckID(cluster); err != nil {
		return fmt.Errorf("--cluster: %s", schema.AsError(err).Message)
	}
	if nodeID != "" {
		if err := schema.CheckID(nodeID); err != nil {
			return fmt.Errorf("--node-id: %s", schema.AsError(err).Message)
		}
	}
	return nil
}
