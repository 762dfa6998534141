package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
)

// bigFanOut is one valid request of 2k+1 commands: k steps on the node
// with loc "data" each return 900 KB, k more take each one's size, and a
// last one joins the sizes. With k = 400 its replies and the second steps'
// arguments add up to 720 MB.
func bigFanOut(k int) string {
	var b strings.Builder
	b.WriteString(`{"id":"fan","timeout_ms":60000,"cmds":[`)
	var sizes []string
	for i := range k {
		fmt.Fprintf(&b, `{"name":"b%d","fun":"blob","args":[900000],"locs":["data"]},`, i)
		fmt.Fprintf(&b, `{"name":"s%d","fun":"size","args":["b%d"],"locs":["data"]},`, i, i)
		sizes = append(sizes, fmt.Sprintf(`"s%d"`, i))
	}
	b.WriteString(`{"name":"all","fun":"echos","args":[` + strings.Join(sizes, ",") + `]}]}`)
	return b.String()
}

// skipUnderRace skips a load test under the race detector, which slows
// senders more than receivers so much that overload no longer happens:
// `make test` runs the load tests (TestLoad*) once more without it.
func skipUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("a load test: make test runs it without -race (make load)")
	}
}

// A request whose steps' replies add up to far more than a NATS
// connection buffers completes (or fails with a typed error naming the
// limit), and other callers' small requests meanwhile all get replies.
// Before, its replies overflowed the planner's pending buffer: the request
// ended in TIMEOUT and small requests of others got no reply at all.
func TestLoadBigRepliesAreFlowControlled(t *testing.T) {
	skipUnderRace(t)
	srv := testcluster.Server(t)
	cfg := testcluster.NodeConfig(t, "planner")
	cfg.Gossip.DeadAfter = 3 * time.Second // as in production: hundreds of MB take a while
	planner := testcluster.Node(t, srv.ClientURL(), cfg, nil)
	// The data node plans nothing: it is another node's exec target only.
	newFake(t, srv.ClientURL(), "data-1", map[string][]string{"blob": {"data"}, "size": {"data"}}, nil)
	testcluster.WaitForRoute(t, planner.Table(), "blob", []string{"data"}, "data-1")
	caller := rawConn(t, srv.ClientURL())

	var wg sync.WaitGroup
	small := make(chan error, 200)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m, err := caller.Request(rpcSubject, []byte(fmt.Sprintf(`{"cmds":[{"name":"e","fun":"echo","args":[%d]}]}`, i)), 5*time.Second)
			if err == nil && !strings.Contains(string(m.Data), `"results":{"e":`) {
				err = fmt.Errorf("small request %d: %s", i, m.Data)
			}
			if err != nil {
				select {
				case small <- err:
				default:
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const k = 400
	m, err := caller.RequestMsgWithContext(ctx, &nats.Msg{Subject: rpcSubject, Data: []byte(bigFanOut(k))})
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	resp := decodeAs(t, m, "application/json")
	require.Nil(t, resp["error"], "%v", resp["error"])
	all, _ := resp["results"].(map[string]any)["all"].([]any)
	require.Len(t, all, k)
	close(small)
	for err := range small {
		t.Errorf("another caller's request: %v", err)
	}
}
