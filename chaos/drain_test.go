package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// TestDrainLosesNoRequest drains three of four nodes, one after the other,
// under a flood of whole requests on the rpc subject (a client without a
// membership view, so the queue group picks the planner). A graceful drain
// must lose nothing: requests the server handed to a draining node before
// it took the unsubscribe are served, and steps sent to it are refused with
// SHUTTING_DOWN and re-routed. Every request must succeed.
func TestDrainLosesNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a cluster for a few seconds")
	}
	s := testcluster.Server(t)
	log := testcluster.LevelLogger(t, slog.LevelWarn)
	var nodes []*node.Node
	for i := 1; i <= 4; i++ {
		cfg := testcluster.NodeConfig(t, fmt.Sprintf("d%d", i))
		cfg.Hooks.Logger = log.With("test_node", cfg.NodeID)
		// Only goodbyes take nodes out of routing here: a starved machine
		// must not make a live node look dead by silence.
		cfg.Gossip.DeadAfter = 2 * time.Second
		nodes = append(nodes, testcluster.Node(t, s.ClientURL(), cfg, nil))
	}
	for _, n := range nodes {
		testcluster.WaitForRoute(t, n.Table(), "echo", nil, "d1", "d2", "d3", "d4")
	}
	c := testcluster.Client(t, s.ClientURL(), client.Config{NoFollow: true})

	var (
		ok   atomic.Int64
		mu   sync.Mutex
		errs []string
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				want := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := c.Run(ctx, &schema.Request{Cmds: []schema.Command{{Name: "a", Fun: "echo", Args: []any{want}}}})
				cancel()
				if err == nil && resp.Results["a"] != want {
					err = fmt.Errorf("got %v, want %s", resp.Results, want)
				}
				if err != nil {
					var e *schema.Error
					code := "UNTYPED"
					if errors.As(err, &e) {
						code = string(e.Code)
					}
					mu.Lock()
					errs = append(errs, code+": "+err.Error())
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	stopped := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopped)

	// waitOK waits until n more requests have succeeded.
	waitOK := func(n int64) {
		target := ok.Load() + n
		testcluster.WaitFor(t, fmt.Sprintf("%d more successful requests", n), func() error {
			if got := ok.Load(); got < target {
				return fmt.Errorf("%d of %d", got, target)
			}
			return nil
		})
	}
	waitOK(300)
	for _, n := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, n.Drain(ctx))
		cancel()
		waitOK(300)
	}
	stopped()
	t.Logf("%d requests succeeded, %d failed across three drains", ok.Load(), len(errs))
	require.Empty(t, errs, "a graceful drain must lose no request")
}
