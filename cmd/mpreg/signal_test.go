package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// busyServer starts `mpreg server --demo`, sends a call to sleep(ms) and
// returns once the node's heartbeat shows the step in flight. The call's
// result arrives on the returned channel.
func busyServer(t *testing.T, ms int) (*daemon, <-chan result) {
	t.Helper()
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	d := startDaemon(t, "server", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--demo",
		"--node-id", "busy", "--drain-timeout", "20s")
	d.waitFor(t, "the server's node to answer", func() error {
		if r := mpreg(t, opts{}, "call", "whoami", "--servers", url, "--timeout", "2s"); r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	beats := make(chan int64, 64)
	sub, err := nc.Subscribe("mpreg.default.gossip.heartbeat", func(m *nats.Msg) {
		var hb struct {
			Load struct{ Inflight int64 } `json:"load"`
		}
		if json.Unmarshal(m.Data, &hb) == nil {
			select {
			case beats <- hb.Load.Inflight:
			default:
			}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	done := make(chan result, 1)
	go func() {
		done <- mpreg(t, opts{}, "call", "sleep", fmt.Sprint(ms), "slept", "--servers", url, "--timeout", "30s")
	}()
	deadline := time.After(10 * time.Second)
	for inflight := int64(0); inflight == 0; {
		select {
		case inflight = <-beats:
		case <-deadline:
			t.Fatal("the sleep step never showed in a heartbeat")
		}
	}
	return d, done
}

// SIGTERM drains: the step in flight finishes and its caller gets the
// result, then the process exits 0.
func TestSignalDrainsWorkInFlight(t *testing.T) {
	t.Parallel()
	d, done := busyServer(t, 1500)
	d.stop(t, syscall.SIGTERM, 0)
	r := <-done
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "\"slept\"\n", r.stdout)
	assert.Contains(t, d.stderr.String(), "node draining")
}

// A second signal during the drain exits at once with status 1.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	d, done := busyServer(t, 20000)
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	testWait := time.Now()
	d.waitFor(t, "the drain to start", func() error {
		if !strings.Contains(d.stderr.String(), "node draining") {
			return fmt.Errorf("not draining yet")
		}
		return nil
	})
	d.stop(t, syscall.SIGTERM, 1)
	assert.Less(t, time.Since(testWait), 10*time.Second, "did not wait for the 20 s step")
	assert.Contains(t, d.stderr.String(), "second signal")
	r := <-done
	assert.NotEqual(t, 0, r.code, "the caller of the abandoned step gets an error")
}
