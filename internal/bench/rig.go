package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/metrics"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// Subjects of the raw NATS echo responders.
const (
	// RawSubject is answered on an in-process connection to the embedded
	// server, as `mpreg server` hosts its node: the fair baseline for
	// the in-process nodes.
	RawSubject = "bench.raw.echo"
	// RawHeaderSubject is RawSubject with a Content-Type header on the
	// request and the reply, as docs/PROTOCOL.md §3 has every MPREG
	// message carry.
	RawHeaderSubject = "bench.raw.echo.hdr"
	// RawTCPSubject is answered on a TCP connection: the baseline for the
	// node on TCP (as `mpreg node` connects).
	RawTCPSubject = "bench.raw.echo.tcp"
	// RawABSubject is answered on node B's own connection and asked from
	// node A's: the round trip a remote step from A to B cannot beat.
	RawABSubject = "bench.raw.echo.ab"
)

// ChainAltRemoteSteps is how many steps of chain-10-ab cross from its
// planner to the other node, one round trip each. The client plans it on
// A (A and B can each run five steps, and A runs the first: client
// affinity, docs/PROTOCOL.md §4.6); the odd steps are pinned to B, and
// none is delegated, as each has only a dependent on A. So A runs five
// steps itself and sends five, one message and its reply each.
// TestChainAltRemoteSteps checks this against the nodes' counters.
const ChainAltRemoteSteps = 5

// The rig's nodes: two in-process ones (A plans and runs the single-node
// scenarios, B is the other node of the two-node ones) and one on TCP.
// Each offers echo and echos and has a loc of its own, which the
// scenarios' steps name to pin themselves to a node.
const (
	LocA   = "a"
	LocB   = "b"
	LocTCP = "tcp"
)

// setupTimeout bounds connecting and waiting for the client to see the node.
const setupTimeout = 10 * time.Second

// callTimeout bounds one call of any scenario.
const callTimeout = 5 * time.Second

// Scenario names, in the order Run measures and prints them.
const (
	ScenarioRaw        = "raw-nats"
	ScenarioRawTCP     = "raw-nats-tcp"
	ScenarioRawHeader  = "raw-nats-hdr"
	ScenarioRawAB      = "raw-a-b"
	ScenarioRPCJSON    = "rpc-json"
	ScenarioRPCJSONTCP = "rpc-json-tcp"
	ScenarioClientCall = "client-call"
	ScenarioRPCRun     = "client-run"
	ScenarioRouted     = "routed-run"
	ScenarioChain10    = "chain-10"
	ScenarioChainAlt   = "chain-10-ab"
	ScenarioChainAway  = "chain-10-b"
	ScenarioChainVia   = "chain-10-via-a"
	ScenarioFanout16   = "fanout-16"
)

// Scenarios lists the scenario names in the order Run measures them.
var Scenarios = []string{
	ScenarioRaw, ScenarioRawTCP, ScenarioRawHeader, ScenarioRawAB, ScenarioRPCJSON, ScenarioRPCJSONTCP,
	ScenarioClientCall, ScenarioRPCRun, ScenarioRouted,
	ScenarioChain10, ScenarioChainAlt, ScenarioChainAway, ScenarioChainVia, ScenarioFanout16,
}

// op is one call of a scenario; it checks the reply and is safe for
// concurrent use.
type op func(ctx context.Context) error

// rig is everything a run measures against, in one process: an embedded
// nats-server (unless servers were given); nodes A and B on in-process
// connections and node T on TCP; raw echo responders on an in-process
// connection, on TCP and on node B's connection (asked from node A's); a requester connection (TCP) for raw and
// foreign-client requests; and a following Go client on its own TCP
// connection. With servers given, every connection is TCP.
type rig struct {
	cfg     Config
	payload string
	urls    []string
	auth    bus.Auth

	srv      *bus.Server // nil when cfg.Servers were given
	storeDir string      // the embedded server's JetStream store, with cfg.Objects or cfg.Durable
	objData  []byte      // the value of the objects phase, with cfg.Objects
	conns    []*nats.Conn
	nodes    []*node.Node // A, B, T
	nodeNCs  []*nats.Conn // their connections
	reqConn  *nats.Conn   // raw requests and JSON rpc requests
	client   *client.Client
	msg      messages
	req      requests
	durIDs   *durableIDs
}

// messages are the rig's pre-encoded messages.
type messages struct {
	raw    []byte    // a raw request's data
	rpc    *nats.Msg // a JSON rpc request, to A
	rpcTCP *nats.Msg // the same to T
	via    *nats.Msg // a chain on B, planned by A
}

// requests are the rig's requests, for the Go client.
type requests struct {
	run, routed, chain, alt, away, fanout *schema.Request
	durOne, durChain                      *schema.Request // with Durable, no id: each call gets its own
}

// newRig starts the rig for a checked cfg. On error everything started so
// far is stopped.
func newRig(ctx context.Context, cfg Config) (_ *rig, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	r := &rig{cfg: cfg, payload: strings.Repeat("x", cfg.PayloadBytes), auth: cfg.Auth, durIDs: newDurableIDs()}
	if cfg.Objects {
		r.objData = make([]byte, cfg.ObjectBytes)
		_, _ = io.ReadFull(&patternReader{size: cfg.ObjectBytes}, r.objData)
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	r.urls = cfg.Servers
	if len(r.urls) == 0 {
		if err = r.startServer(); err != nil {
			return nil, err
		}
	}
	ip, err := r.dial(ctx, "mpreg-bench-raw-echo", true)
	if err != nil {
		return nil, err
	}
	tcp, err := r.dial(ctx, "mpreg-bench-raw-echo-tcp", false)
	if err != nil {
		return nil, err
	}
	if err = r.rawResponders(ctx, ip, tcp); err != nil {
		return nil, err
	}
	var reg *prometheus.Registry
	if cfg.Metrics {
		reg = metrics.NewRegistry()
	}
	for _, n := range []struct {
		loc       string
		inProcess bool
	}{{LocA, true}, {LocB, true}, {LocTCP, false}} {
		if err = r.startNode(ctx, n.loc, n.inProcess, reg); err != nil {
			return nil, err
		}
	}
	if err = r.abResponder(ctx); err != nil {
		return nil, err
	}
	if r.reqConn, err = r.dial(ctx, "mpreg-bench-requester", false); err != nil {
		return nil, err
	}
	r.client, err = client.Connect(ctx, client.Config{
		Dial:      bus.ConnConfig{Servers: r.urls, Auth: r.auth, InboxPrefix: cfg.InboxPrefix, Name: "mpreg-bench-client"},
		Cluster:   cfg.Cluster,
		Timeout:   callTimeout,
		SyncQuiet: 50 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, n := range r.nodes {
		if err = waitForNode(ctx, r.client, n.ID()); err != nil {
			return nil, err
		}
	}
	if cfg.Durable {
		if err = r.waitDurable(ctx); err != nil {
			return nil, err
		}
	}
	return r, r.requests()
}

// startServer starts the embedded server, with JetStream storing in a
// temporary directory when cfg.Objects or cfg.Durable need it.
func (r *rig) startServer() (err error) {
	r.auth = bus.Auth{} // the embedded server asks for none
	scfg := bus.ServerConfig{Host: "127.0.0.1", Port: -1}
	if r.cfg.Objects || r.cfg.Durable {
		if r.storeDir, err = os.MkdirTemp("", "mpreg-bench-js-"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		scfg.JetStream = bus.JetStreamConfig{Enabled: true, StoreDir: r.storeDir}
	}
	if r.srv, err = bus.StartServer(scfg); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.urls = []string{r.srv.ClientURL()}
	return nil
}

// dial connects one of the rig's connections, in-process to the embedded
// server when asked and there is one.
func (r *rig) dial(ctx context.Context, name string, inProcess bool) (*nats.Conn, error) {
	cc := bus.ConnConfig{Servers: r.urls, Name: name, Auth: r.auth, InboxPrefix: r.cfg.InboxPrefix,
		// A benchmark tries once: refused credentials end it at once.
		Options: []nats.Option{nats.RetryOnFailedConnect(false)}}
	if inProcess && r.srv != nil {
		cc.InProcess = r.srv.NATS()
	}
	nc, err := bus.Connect(ctx, cc)
	if err != nil {
		if why, ok := bus.ExplainConnectError(err); ok {
			return nil, schema.Wrap(schema.CodeUnauthenticated, err, "bench: %s", why)
		}
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	r.conns = append(r.conns, nc)
	return nc, nil
}

// rawResponders subscribes the raw echo responders, which answer on the
// subscription's goroutine as the simplest NATS service does.
func (r *rig) rawResponders(ctx context.Context, ip, tcp *nats.Conn) error {
	echo := func(m *nats.Msg) { _ = m.Respond(m.Data) }
	for _, s := range []struct {
		nc      *nats.Conn
		subject string
		h       nats.MsgHandler
	}{
		{ip, RawSubject, echo},
		{ip, RawHeaderSubject, func(m *nats.Msg) { _ = m.RespondMsg(&nats.Msg{Data: m.Data, Header: m.Header}) }},
		{tcp, RawTCPSubject, echo},
	} {
		sub, err := s.nc.Subscribe(s.subject, s.h)
		if err != nil {
			return fmt.Errorf("bench: subscribe %s: %w", s.subject, err)
		}
		_ = sub.SetPendingLimits(-1, 256<<20)
	}
	for _, nc := range []*nats.Conn{ip, tcp} {
		if err := nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("bench: flush: %w", err)
		}
	}
	return nil
}

// abResponder subscribes a raw echo responder on node B's connection, for
// requests from node A's: the same two connections a remote step of A's
// travels between.
func (r *rig) abResponder(ctx context.Context) error {
	b := r.nodeNCs[1]
	sub, err := b.Subscribe(RawABSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return fmt.Errorf("bench: subscribe %s: %w", RawABSubject, err)
	}
	_ = sub.SetPendingLimits(-1, 256<<20)
	if err := b.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("bench: flush: %w", err)
	}
	return nil
}

// startNode starts a node with loc on its own connection.
func (r *rig) startNode(ctx context.Context, loc string, inProcess bool, reg *prometheus.Registry) error {
	nc, err := r.dial(ctx, "mpreg-bench-node-"+loc, inProcess)
	if err != nil {
		return err
	}
	ncfg := node.Config{
		Cluster: r.cfg.Cluster,
		Name:    "mpreg bench " + loc,
		Locs:    []string{loc},
		// Room for every fan-out step of every concurrent requester.
		Limits: node.Limits{MaxInflight: max(4096, 2*17*r.cfg.Concurrency)},
	}
	if reg != nil {
		if ncfg.Hooks.Recorder, err = metrics.NewRecorder(prometheus.WrapRegistererWith(prometheus.Labels{"bench_node": loc}, reg)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	n, err := node.New(nc, ncfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if r.cfg.Objects && loc != LocTCP {
		if err = r.registerObjects(n); err != nil {
			return err
		}
	}
	r.nodes, r.nodeNCs = append(r.nodes, n), append(r.nodeNCs, nc)
	if reg != nil {
		if err = metrics.WatchNode(prometheus.WrapRegistererWith(prometheus.Labels{"bench_node": loc}, reg), n); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if err = n.Start(ctx); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// requests builds the requests the scenarios send.
func (r *rig) requests() error {
	r.msg.raw = []byte(r.payload)
	subj := bus.NewSubjects("", r.cfg.Cluster)
	one := func(loc string) map[string]any {
		return map[string]any{"cmds": []map[string]any{{"name": "r", "fun": "echo", "args": []string{r.payload}, "locs": []string{loc}}}}
	}
	for _, m := range []struct {
		dst  **nats.Msg
		node *node.Node
		body any
	}{
		{&r.msg.rpc, r.nodes[0], one(LocA)},
		{&r.msg.rpcTCP, r.nodes[2], one(LocTCP)},
		{&r.msg.via, r.nodes[0], chainRequest(r.payload, 10, LocB)},
	} {
		body, err := json.Marshal(m.body)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		*m.dst = bus.NewMsg(subj.NodeRPC(m.node.ID()), body, codec.JSONType, "")
	}
	r.req.run = &schema.Request{Cmds: []schema.Command{{Name: "r", Fun: "echo", Args: []any{r.payload}, Locs: []string{LocA}}}}
	r.req.routed = &schema.Request{Cmds: []schema.Command{{Name: "r", Fun: "echo", Args: []any{r.payload}, Locs: []string{LocB}}}}
	r.req.chain = chainRequest(r.payload, 10, LocA)
	r.req.alt = chainRequest(r.payload, 10, LocA, LocB)
	r.req.away = chainRequest(r.payload, 10, LocB)
	r.req.fanout = fanoutRequest(r.payload, 16, LocA)
	r.req.durOne, r.req.durChain = durableOf(r.req.run), durableOf(r.req.chain)
	return nil
}

// waitForNode waits until the client routes echo and echos to node.
func waitForNode(ctx context.Context, c *client.Client, id string) error {
	for {
		changed := c.Table().Changed()
		if hasNode(c.Table().Eligible("echo", nil), id) && hasNode(c.Table().Eligible("echos", nil), id) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("bench: the client never saw node %s: %w", id, ctx.Err())
		}
	}
}

func hasNode(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// close stops everything newRig started, in reverse order. It is safe on a
// partly built rig.
func (r *rig) close() {
	if r == nil {
		return
	}
	r.client.Close()
	for i := len(r.nodes) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = r.nodes[i].Drain(ctx)
		cancel()
	}
	for i := len(r.conns) - 1; i >= 0; i-- {
		r.conns[i].Close()
	}
	r.srv.Shutdown()
	if r.storeDir != "" {
		_ = os.RemoveAll(r.storeDir)
	}
}

// chainRequest is n echo steps, each taking the previous one's result;
// step i is pinned to locs[i%len(locs)].
func chainRequest(payload string, n int, locs ...string) *schema.Request {
	cmds := make([]schema.Command, n)
	for i := range cmds {
		arg := payload
		if i > 0 {
			arg = cmds[i-1].Name
		}
		cmds[i] = schema.Command{Name: fmt.Sprintf("|s%d", i), Fun: "echo", Args: []any{arg}, Locs: []string{locs[i%len(locs)]}}
	}
	return &schema.Request{Cmds: cmds}
}

// fanoutRequest is n independent echo steps and one echos step of all
// their results, all pinned to loc.
func fanoutRequest(payload string, n int, loc string) *schema.Request {
	cmds := make([]schema.Command, 0, n+1)
	sink := schema.Command{Name: "|sink", Fun: "echos", Args: make([]any, 0, n), Locs: []string{loc}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("|f%d", i)
		cmds = append(cmds, schema.Command{Name: name, Fun: "echo", Args: []any{payload}, Locs: []string{loc}})
		sink.Args = append(sink.Args, name)
	}
	return &schema.Request{Cmds: append(cmds, sink)}
}

// errMismatch is a reply that is not the echo of the request.
var errMismatch = errors.New("bench: reply is not the echo of the request")

func (r *rig) ops() map[string]op {
	return map[string]op{
		ScenarioRaw:        r.rawRequest(RawSubject),
		ScenarioRawTCP:     r.rawRequest(RawTCPSubject),
		ScenarioRawHeader:  r.rawHeaderRequest,
		ScenarioRawAB:      r.rawRequestOn(r.nodeNCs[0], RawABSubject),
		ScenarioRPCJSON:    r.rpcJSON(r.msg.rpc, "r"),
		ScenarioRPCJSONTCP: r.rpcJSON(r.msg.rpcTCP, "r"),
		ScenarioClientCall: r.clientCall,
		ScenarioRPCRun:     r.runEcho(r.req.run, "r"),
		ScenarioRouted:     r.runEcho(r.req.routed, "r"),
		ScenarioChain10:    r.runEcho(r.req.chain, "|s9"),
		ScenarioChainAlt:   r.runEcho(r.req.alt, "|s9"),
		ScenarioChainAway:  r.runEcho(r.req.away, "|s9"),
		ScenarioChainVia:   r.rpcJSON(r.msg.via, "|s9"),
		ScenarioFanout16:   r.fanout16,
		ScenarioDurable1:   r.runDurable(r.req.durOne, "r"),
		ScenarioDurable10:  r.runDurable(r.req.durChain, "|s9"),
	}
}

// rawRequest is one plain NATS request from the requester connection to a
// raw echo responder.
func (r *rig) rawRequest(subject string) op { return r.rawRequestOn(r.reqConn, subject) }

// rawRequestOn is one plain NATS request on nc to a raw echo responder.
func (r *rig) rawRequestOn(nc *nats.Conn, subject string) op {
	return func(context.Context) error {
		m, err := nc.Request(subject, r.msg.raw, callTimeout)
		if err != nil {
			return err
		}
		if string(m.Data) != r.payload {
			return errMismatch
		}
		return nil
	}
}

// rawHeaderRequest is a raw request with a Content-Type header on the
// request and on the reply.
func (r *rig) rawHeaderRequest(context.Context) error {
	m, err := r.reqConn.RequestMsg(bus.NewMsg(RawHeaderSubject, r.msg.raw, codec.MsgPackType, ""), callTimeout)
	if err != nil {
		return err
	}
	if string(m.Data) != r.payload || m.Header.Get(codec.HeaderContentType) != codec.MsgPackType {
		return errMismatch
	}
	return nil
}

// clientCall is one client.Call of echo on node A: straight to its exec
// subject.
func (r *rig) clientCall(ctx context.Context) error {
	v, err := r.client.Call(ctx, "echo", []any{r.payload}, client.WithLocs(LocA))
	if err != nil {
		return err
	}
	if s, _ := v.(string); s != r.payload {
		return errMismatch
	}
	return nil
}

// rpcReply is the part of an RPC response a foreign client reads.
type rpcReply struct {
	Results map[string]string `json:"results"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpcJSON is one request on a node's rpc subject in JSON, sent as a client
// in another language would (a plain NATS request), whose one result,
// under key, must be the payload.
func (r *rig) rpcJSON(msg *nats.Msg, key string) op {
	return func(context.Context) error {
		m, err := r.reqConn.RequestMsg(msg, callTimeout)
		if err != nil {
			return err
		}
		var rep rpcReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return fmt.Errorf("bench: rpc reply: %w", err)
		}
		if rep.Error != nil {
			return fmt.Errorf("bench: rpc reply: %s: %s", rep.Error.Code, rep.Error.Message)
		}
		if rep.Results[key] != r.payload || len(rep.Results) != 1 {
			return errMismatch
		}
		return nil
	}
}

// runEcho sends req through client.Run (the client's Timeout bounds it);
// its one result, under key, must be the payload.
func (r *rig) runEcho(req *schema.Request, key string) op {
	return func(ctx context.Context) error {
		resp, err := r.client.Run(ctx, req)
		if err != nil {
			return err
		}
		if s, _ := resp.Results[key].(string); s != r.payload || len(resp.Results) != 1 {
			return errMismatch
		}
		return nil
	}
}

// fanout16 is a request of 16 independent echo steps and one echos sink.
func (r *rig) fanout16(ctx context.Context) error {
	resp, err := r.client.Run(ctx, r.req.fanout)
	if err != nil {
		return err
	}
	l, _ := resp.Results["|sink"].([]any)
	if len(l) != 16 || len(resp.Results) != 1 {
		return errMismatch
	}
	for _, v := range l {
		if s, _ := v.(string); s != r.payload {
			return errMismatch
		}
	}
	return nil
}
