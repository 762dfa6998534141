package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
)

// server starts an embedded NATS server (testcluster would import this
// package).
func server(t *testing.T) *bus.Server {
	t.Helper()
	s, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	return s
}

// silentListeners accepts TCP connections on n loopback ports and never
// says anything, as the addresses of a forged or broken hello did.
func silentListeners(t *testing.T, n int) []string {
	t.Helper()
	var urls []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { _ = c.Close() })
			}
		}()
		t.Cleanup(func() { _ = l.Close(); <-done })
		urls = append(urls, "nats://"+l.Addr().String())
	}
	return urls
}

// Only advertised URLs that answer as NATS servers join the pool, at most
// maxLearned of them, and they leave it when no peer advertises them.
func TestLearnedServers(t *testing.T) {
	home := server(t)
	other := server(t)
	nc, err := nats.Connect(home.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	p := newServerPool(nc, slog.New(slog.DiscardHandler))
	p.timeout = 100 * time.Millisecond
	ctx := context.Background()

	bad := silentListeners(t, 60)
	advertised := append(slices.Clone(bad), other.ClientURL())
	for turn := 0; turn < len(advertised)/probesPerTurn+1; turn++ {
		p.turn(ctx, advertised)
	}
	pool := nc.Servers()
	require.Contains(t, pool, other.ClientURL(), "a real NATS server joins")
	for _, u := range bad {
		require.NotContains(t, pool, u, "an address that does not speak NATS stays out")
	}
	require.Contains(t, pool, home.ClientURL(), "the configured server stays")

	// No live peer advertises it any more: it leaves.
	p.turn(ctx, nil)
	require.NotContains(t, nc.Servers(), other.ClientURL())
	require.Contains(t, nc.Servers(), home.ClientURL())

	// At most maxLearned are kept.
	var many []string
	for i := range maxLearned + 4 {
		many = append(many, server(t).ClientURL())
		_ = i
	}
	for range len(many)/probesPerTurn + 1 {
		p.turn(ctx, many)
	}
	require.Len(t, nc.Servers(), 1+maxLearned, fmt.Sprint(nc.Servers()))
}

// A reply to sync or info says whether it is a hello or a goodbye; one
// without a kind is read by its keys.
func TestReplyKind(t *testing.T) {
	require.Equal(t, "goodbye", ReplyKind(map[string]any{"kind": "goodbye", "version": int64(1)}))
	require.Equal(t, "hello", ReplyKind(map[string]any{"kind": "hello"}))
	require.Equal(t, "goodbye", ReplyKind(map[string]any{"node": "n"}))
	require.Equal(t, "hello", ReplyKind(map[string]any{"node": "n", "version": int64(1)}))
}

// The exec subjects an Execer keeps stay bounded, and right, as nodes come
// and go.
func TestExecSubjects(t *testing.T) {
	e := &Execer{Subjects: bus.NewSubjects("", "c1")}
	for i := range 2*maxExecSubjects + 10 {
		node := "n" + strconv.Itoa(i)
		require.Equal(t, e.Subjects.Exec(node), e.execSubject(node))
		require.Equal(t, e.Subjects.Exec(node), e.execSubject(node), "from the cache")
	}
	n := 0
	e.execSubjects.Range(func(any, any) bool { n++; return true })
	require.LessOrEqual(t, n, maxExecSubjects)
	require.Positive(t, n)
}
