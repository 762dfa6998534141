package bench

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// BenchmarkReplyWrites runs raw-nats, rpc-json and their TCP variants
// from 64 goroutines, as BenchmarkParallel does, on responders whose
// connections count their writes, and reports the writes per call of the
// responder's connection (writes/op): how many replies share a write.
// raw-nats-tcp-goroutine is raw-nats-tcp answered from a goroutine per
// request, as a node's workers answer.
func BenchmarkReplyWrites(b *testing.B) {
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	// Each connection and node gets setupTimeout of its own: the ones of
	// the later scenarios are set up after the earlier ones have run.
	setup := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		b.Cleanup(cancel)
		return ctx
	}
	dial := func(name string, w *testcluster.WriteCounter) *nats.Conn {
		o := nats.SetCustomDialer(w)
		if w.Srv != nil {
			o = nats.InProcessServer(w)
		}
		nc, err := bus.Connect(setup(), bus.ConnConfig{Servers: []string{srv.ClientURL()}, Name: name,
			Options: []nats.Option{nats.RetryOnFailedConnect(false), o}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		return nc
	}
	payload := []byte("0123456789abcdef")
	requester := dial("requester", &testcluster.WriteCounter{})
	for _, s := range []struct {
		name      string
		inProcess bool
		node      bool
		goroutine bool // the raw responder replies from a goroutine per request
	}{
		{ScenarioRaw, true, false, false}, {ScenarioRPCJSON, true, true, false},
		{ScenarioRawTCP, false, false, false}, {ScenarioRPCJSONTCP, false, true, false},
		{ScenarioRawTCP + "-goroutine", false, false, true},
	} {
		w := &testcluster.WriteCounter{}
		if s.inProcess {
			w.Srv = srv.NATS()
		}
		nc := dial(s.name, w)
		msg := &nats.Msg{Subject: "bench.writes." + s.name, Data: payload}
		if s.node {
			n, err := node.New(nc, node.Config{Cluster: "bench-writes", Limits: node.Limits{MaxInflight: 4096}})
			if err != nil {
				b.Fatal(err)
			}
			if err := n.Start(setup()); err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			msg = rpcMsg(b, n.ID(), string(payload))
		} else {
			echo := func(m *nats.Msg) { _ = m.Respond(m.Data) }
			h := echo
			if s.goroutine {
				h = func(m *nats.Msg) { go echo(m) }
			}
			sub, err := nc.Subscribe(msg.Subject, h)
			if err != nil {
				b.Fatal(err)
			}
			_ = sub.SetPendingLimits(-1, 256<<20)
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetParallelism(max(1, DefaultConfig().Concurrency/runtime.GOMAXPROCS(0)))
			w0 := w.Writes.Load()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := requester.RequestMsg(msg, callTimeout); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(w.Writes.Load()-w0)/float64(b.N), "writes/op")
		})
	}
}

// rpcMsg is a JSON rpc request of one echo of payload to node id, as
// rig.requests builds them.
func rpcMsg(b *testing.B, id, payload string) *nats.Msg {
	body, err := json.Marshal(map[string]any{"cmds": []map[string]any{{"name": "r", "fun": "echo", "args": []string{payload}}}})
	if err != nil {
		b.Fatal(err)
	}
	return bus.NewMsg(bus.NewSubjects("", "bench-writes").NodeRPC(id), body, codec.JSONType, "")
}
