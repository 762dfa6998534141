//go:build !race

package node_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
)

// writeCounter dials TCP connections that count their writes: the
// syscalls nats.go's flusher makes.
type writeCounter struct{ writes atomic.Int64 }

func (w *writeCounter) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return countedConn{Conn: c, writes: &w.writes}, nil
}

type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

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
	var counter writeCounter
	nc := testcluster.Conn(t, s.ClientURL(), testcluster.WithConnConfig(bus.ConnConfig{
		Servers: []string{s.ClientURL()}, Logger: testcluster.LevelLogger(t, slog.LevelWarn),
		Options: []nats.Option{nats.SetCustomDialer(&counter)},
	}))
	w := testcluster.StartNode(t, nc, testcluster.NodeConfig(t, "w"), registerStd)
	requester := testcluster.Conn(t, s.ClientURL())
	ctx := testwait.Ctx(t)
	writes, sent := counter.writes.Load(), nc.Stats().OutMsgs
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
	writes, sent = counter.writes.Load()-writes, nc.Stats().OutMsgs-sent
	require.GreaterOrEqual(t, sent, uint64(requesters*each), "the node published every reply")
	t.Logf("%d messages in %d writes", sent, writes)
	require.LessOrEqual(t, writes, int64(sent/4), "%d messages published in %d writes: the replies did not share writes", sent, writes)
	require.Equal(t, int64(requesters*each), w.Stats().Requests)
}
