//go:build !race

package node_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// TestRepliesShareWrites: 64 requesters, each sending its next request
// as soon as the last is answered, keep a node busy. Each worker has its
// reply to send while other requests are still planned: the replies share
// the connection's writes, as a responder answering on its subscription's
// goroutine does: at most one write per 4 messages (0.07–0.14 measured),
// where replies published one by one took 0.4–0.9 writes each
// (docs/BENCHMARKS.md, "Replies under load").
// Built without the race detector: its slower goroutines interleave so
// that even replies published one by one share writes. The test runs on
// two processors, as the figures were measured: with many more, idle
// ones pick up the yielding sender sooner and batches are smaller.
func TestRepliesShareWrites(t *testing.T) {
	const requesters, each = 64, 25
	procs := runtime.GOMAXPROCS(2)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	s := testcluster.Server(t)
	var counter testcluster.WriteCounter
	nc := testcluster.Conn(t, s.ClientURL(), testcluster.WithConnConfig(bus.ConnConfig{
		Servers: []string{s.ClientURL()}, Logger: testcluster.LevelLogger(t, slog.LevelWarn),
		Options: []nats.Option{nats.SetCustomDialer(&counter)},
	}))
	w := testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "w"), registerStd)
	requester := testcluster.Conn(t, s.ClientURL())
	ctx := testwait.Ctx(t)
	writes, sent := counter.Writes.Load(), nc.Stats().OutMsgs
	errs := make(chan error, requesters)
	for g := range requesters {
		go func() {
			for i := range each {
				body := fmt.Sprintf(`{"id": "r%d-%d", "cmds": [{"name": "x", "fun": "echo", "args": ["hi"]}]}`, g, i)
				m, err := requester.RequestMsgWithContext(ctx, &nats.Msg{Subject: "mpreg.default.node.w.rpc", Data: []byte(body), Header: jsonHeader()})
				if err == nil && !bytes.Contains(m.Data, []byte(`"results":{"x":"hi"}`)) {
					err = fmt.Errorf("reply %s", m.Data)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range requesters {
		require.NoError(t, testwait.Recv(t, errs, "a requester's replies"))
	}
	// The node's own messages (heartbeats) go out meanwhile too: the
	// writes are counted against every message it published.
	writes, sent = counter.Writes.Load()-writes, nc.Stats().OutMsgs-sent
	require.GreaterOrEqual(t, sent, uint64(requesters*each), "the node published every reply")
	t.Logf("%d messages in %d writes", sent, writes)
	require.LessOrEqual(t, writes, int64(sent/4), "%d messages published in %d writes: the replies did not share writes", sent, writes)
	require.Equal(t, int64(requesters*each), w.Stats().Requests)
}

// BenchmarkReplyBatch compares a node's replies batched (replyBatch) and
// published one by one, in one process, taking turns every 1,000 calls:
// rpc requests of one echo from 64 requesters sharing a TCP connection, to
// a node on TCP and to one on an in-process connection. It reports the
// calls per second and the writes per reply of the node's connection of
// each, and the ratio of the calls per second (batched / one by one).
func BenchmarkReplyBatch(b *testing.B) {
	s := testcluster.Server(b)
	requester := testcluster.Conn(b, s.ClientURL())
	for _, inProcess := range []bool{false, true} {
		name, id := "tcp", "wt"
		counter := &testcluster.WriteCounter{}
		opt := nats.SetCustomDialer(counter)
		if inProcess {
			name, id = "in-process", "wi"
			counter.Srv = s.NATS()
			opt = nats.InProcessServer(counter)
		}
		nc := testcluster.Conn(b, s.ClientURL(), testcluster.WithConnConfig(bus.ConnConfig{
			Servers: []string{s.ClientURL()}, Logger: testcluster.LevelLogger(b, slog.LevelWarn), Options: []nats.Option{opt},
		}))
		cfg := testcluster.NodeConfig(b, id)
		cfg.Hooks.Logger = testcluster.LevelLogger(b, slog.LevelWarn)
		testcluster.StartNode(b, nc, cfg, registerStd)
		msg := &nats.Msg{Subject: "mpreg.default.node." + id + ".rpc", Header: jsonHeader(),
			Data: []byte(`{"cmds": [{"name": "x", "fun": "echo", "args": ["0123456789abcdef"]}]}`)}
		b.Run(name, func(b *testing.B) { benchReplyBatch(b, requester, msg, counter) })
	}
}

func benchReplyBatch(b *testing.B, requester *nats.Conn, msg *nats.Msg, counter *testcluster.WriteCounter) {
	defer node.SetReplyBatch(true)
	const round, requesters = 1000, 64
	var took [2]time.Duration // batched, one by one
	var writes [2]int64
	for done := 0; done < b.N; done += round {
		for v, batched := range []bool{true, false} {
			node.SetReplyBatch(batched)
			left := atomic.Int64{}
			left.Store(int64(min(round, b.N-done)))
			t0, w0 := time.Now(), counter.Writes.Load()
			var wg sync.WaitGroup
			for range requesters {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if _, err := requester.RequestMsg(msg, 5*time.Second); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			took[v] += time.Since(t0)
			writes[v] += counter.Writes.Load() - w0
		}
	}
	n := float64(b.N)
	b.ReportMetric(n/took[0].Seconds(), "batched-req/s")
	b.ReportMetric(n/took[1].Seconds(), "unbatched-req/s")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "batched/unbatched")
	b.ReportMetric(float64(writes[0])/n, "batched-writes/reply")
	b.ReportMetric(float64(writes[1])/n, "unbatched-writes/reply")
}
