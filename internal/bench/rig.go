package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// RawSubject is the subject of the raw NATS echo responder.
const RawSubject = "bench.raw.echo"

// RawHeaderSubject is the subject of the raw responder that echoes with a
// Content-Type header, as docs/PROTOCOL.md §3 has every MPREG reply do.
const RawHeaderSubject = "bench.raw.echo.hdr"

// setupTimeout bounds connecting and waiting for the client to see the node.
const setupTimeout = 10 * time.Second

// callTimeout bounds one call of any scenario.
const callTimeout = 5 * time.Second

// Scenario names, in the order Run measures and prints them.
const (
	ScenarioRaw        = "raw-nats"
	ScenarioRawHeader  = "raw-nats-hdr"
	ScenarioClientCall = "client-call"
	ScenarioRPCJSON    = "rpc-json"
	ScenarioRPCRun     = "rpc-client-run"
	ScenarioChain10    = "chain-10"
	ScenarioFanout16   = "fanout-16"
)

// Scenarios lists the scenario names in the order Run measures them.
var Scenarios = []string{ScenarioRaw, ScenarioRawHeader, ScenarioClientCall, ScenarioRPCJSON, ScenarioRPCRun, ScenarioChain10, ScenarioFanout16}

// op is one call of a scenario; it checks the reply and is safe for
// concurrent use.
type op func(ctx context.Context) error

// rig is everything a run measures against, in one process: an embedded
// nats-server (unless servers were given), one node on its own connection,
// a raw echo responder on its own connection, a requester connection for raw
// and foreign-client requests, and a following client on its own connection.
type rig struct {
	cfg     Config
	payload string
	urls    []string

	srv       *bus.Server // nil when cfg.Servers were given
	nodeConn  *nats.Conn
	node      *node.Node
	rawConn   *nats.Conn // the raw echo responder's connection
	rawSub    *nats.Subscription
	rawHdrSub *nats.Subscription
	reqConn   *nats.Conn // raw requests and JSON rpc requests
	client    *client.Client
	rawData   []byte
	rpcMsg    *nats.Msg // pre-encoded JSON rpc request
	chainReq  *schema.Request
	fanoutReq *schema.Request
}

// newRig starts the rig for a checked cfg. On error everything started so
// far is stopped.
func newRig(ctx context.Context, cfg Config) (_ *rig, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	r := &rig{cfg: cfg, payload: strings.Repeat("x", cfg.PayloadBytes)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	r.urls = cfg.Servers
	auth := cfg.Auth
	if len(r.urls) == 0 {
		auth = bus.Auth{} // the embedded server asks for none
		if r.srv, err = bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1}); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		r.urls = []string{r.srv.ClientURL()}
	}
	dial := func(name string) (*nats.Conn, error) {
		// A benchmark tries once: refused credentials end it at once.
		nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: r.urls, Name: name, Auth: auth,
			Options: []nats.Option{nats.RetryOnFailedConnect(false)}})
		if err != nil {
			if why, ok := bus.ExplainConnectError(err); ok {
				return nil, schema.Wrap(schema.CodeUnauthenticated, err, "bench: %s", why)
			}
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		return nc, nil
	}

	// The raw echo responder answers on the subscription's goroutine, as
	// the simplest NATS service does.
	if r.rawConn, err = dial("mpreg-bench-raw-echo"); err != nil {
		return nil, err
	}
	r.rawSub, err = r.rawConn.Subscribe(RawSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe %s: %w", RawSubject, err)
	}
	_ = r.rawSub.SetPendingLimits(-1, 256<<20)
	// The same with the header every MPREG message carries, both ways.
	r.rawHdrSub, err = r.rawConn.Subscribe(RawHeaderSubject, func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Data: m.Data, Header: m.Header})
	})
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe %s: %w", RawHeaderSubject, err)
	}
	_ = r.rawHdrSub.SetPendingLimits(-1, 256<<20)
	if err = r.rawConn.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("bench: flush: %w", err)
	}

	if r.nodeConn, err = dial("mpreg-bench-node"); err != nil {
		return nil, err
	}
	ncfg := node.Config{
		Cluster: cfg.Cluster,
		Name:    "mpreg bench",
		// Room for every fan-out step of every concurrent requester.
		MaxInflight: max(4096, 2*17*cfg.Concurrency),
	}
	var reg *prometheus.Registry
	if cfg.Metrics {
		reg = metrics.NewRegistry()
		if ncfg.Recorder, err = metrics.NewRecorder(reg); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	r.node, err = node.New(r.nodeConn, ncfg)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if reg != nil {
		if err = metrics.WatchNode(reg, r.node); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	if err = r.node.Start(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	if r.reqConn, err = dial("mpreg-bench-requester"); err != nil {
		return nil, err
	}
	r.client, err = client.Connect(ctx, client.Config{
		Servers:   r.urls,
		Auth:      auth,
		Cluster:   cfg.Cluster,
		Timeout:   callTimeout,
		SyncQuiet: 50 * time.Millisecond,
		Name:      "mpreg-bench-client",
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err = waitForNode(ctx, r.client, r.node.ID()); err != nil {
		return nil, err
	}

	r.rawData = []byte(r.payload)
	body, err := json.Marshal(map[string]any{
		"cmds": []map[string]any{{"name": "r", "fun": "echo", "args": []string{r.payload}}},
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.rpcMsg = bus.NewMsg(bus.NewSubjects("", cfg.Cluster).RPC(), body, codec.JSONType, "")
	r.chainReq = chainRequest(r.payload, 10)
	r.fanoutReq = fanoutRequest(r.payload, 16)
	return r, nil
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
	if r.reqConn != nil {
		r.reqConn.Close()
	}
	if r.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = r.node.Drain(ctx)
		cancel()
	}
	if r.nodeConn != nil {
		r.nodeConn.Close()
	}
	if r.rawHdrSub != nil {
		_ = r.rawHdrSub.Unsubscribe()
	}
	if r.rawSub != nil {
		_ = r.rawSub.Unsubscribe()
	}
	if r.rawConn != nil {
		r.rawConn.Close()
	}
	r.srv.Shutdown()
}

// chainRequest is n echo steps, each taking the previous one's result.
func chainRequest(payload string, n int) *schema.Request {
	cmds := make([]schema.Command, n)
	for i := range cmds {
		arg := payload
		if i > 0 {
			arg = cmds[i-1].Name
		}
		cmds[i] = schema.Command{Name: fmt.Sprintf("|s%d", i), Fun: "echo", Args: []any{arg}}
	}
	return &schema.Request{Cmds: cmds}
}

// fanoutRequest is n independent echo steps and one echos step of all
// their results.
func fanoutRequest(payload string, n int) *schema.Request {
	cmds := make([]schema.Command, 0, n+1)
	sink := schema.Command{Name: "|sink", Fun: "echos", Args: make([]any, 0, n)}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("|f%d", i)
		cmds = append(cmds, schema.Command{Name: name, Fun: "echo", Args: []any{payload}})
		sink.Args = append(sink.Args, name)
	}
	return &schema.Request{Cmds: append(cmds, sink)}
}

// errMismatch is a reply that is not the echo of the request.
var errMismatch = errors.New("bench: reply is not the echo of the request")

func (r *rig) ops() map[string]op {
	return map[string]op{
		ScenarioRaw:        r.rawRequest,
		ScenarioRawHeader:  r.rawHeaderRequest,
		ScenarioClientCall: r.clientCall,
		ScenarioRPCJSON:    r.rpcJSON,
		ScenarioRPCRun:     r.rpcRun,
		ScenarioChain10:    r.chain10,
		ScenarioFanout16:   r.fanout16,
	}
}

// rawRequest is one plain NATS request to the raw echo responder.
func (r *rig) rawRequest(context.Context) error {
	m, err := r.reqConn.Request(RawSubject, r.rawData, callTimeout)
	if err != nil {
		return err
	}
	if string(m.Data) != r.payload {
		return errMismatch
	}
	return nil
}

// rawHeaderRequest is rawRequest with a Content-Type header on the request
// and on the reply.
func (r *rig) rawHeaderRequest(context.Context) error {
	m, err := r.reqConn.RequestMsg(bus.NewMsg(RawHeaderSubject, r.rawData, codec.MsgPackType, ""), callTimeout)
	if err != nil {
		return err
	}
	if string(m.Data) != r.payload || m.Header.Get(codec.HeaderContentType) != codec.MsgPackType {
		return errMismatch
	}
	return nil
}

// clientCall is one client.Call of echo: straight to the node's exec subject.
func (r *rig) clientCall(ctx context.Context) error {
	v, err := r.client.Call(ctx, "echo", []any{r.payload})
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

// rpcJSON is one echo request on the rpc subject in JSON, sent as a client
// in another language would: a plain NATS request.
func (r *rig) rpcJSON(context.Context) error {
	m, err := r.reqConn.RequestMsg(r.rpcMsg, callTimeout)
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
	if rep.Results["r"] != r.payload {
		return errMismatch
	}
	return nil
}

// run sends req through client.Run; the client's Timeout bounds it.
func (r *rig) run(ctx context.Context, req *schema.Request) (map[string]any, error) {
	resp, err := r.client.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// rpcRun is one echo request on the rpc subject through client.Run.
func (r *rig) rpcRun(ctx context.Context) error {
	res, err := r.run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "r", Fun: "echo", Args: []any{r.payload}}}})
	if err != nil {
		return err
	}
	if s, _ := res["r"].(string); s != r.payload {
		return errMismatch
	}
	return nil
}

// chain10 is a request of ten echo steps, each waiting for the one before.
func (r *rig) chain10(ctx context.Context) error {
	res, err := r.run(ctx, r.chainReq)
	if err != nil {
		return err
	}
	if s, _ := res["|s9"].(string); s != r.payload || len(res) != 1 {
		return errMismatch
	}
	return nil
}

// fanout16 is a request of 16 independent echo steps and one echos sink.
func (r *rig) fanout16(ctx context.Context) error {
	res, err := r.run(ctx, r.fanoutReq)
	if err != nil {
		return err
	}
	l, _ := res["|sink"].([]any)
	if len(l) != 16 || len(res) != 1 {
		return errMismatch
	}
	for _, v := range l {
		if s, _ := v.(string); s != r.payload {
			return errMismatch
		}
	}
	return nil
}
