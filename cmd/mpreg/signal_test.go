package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// demoServer starts `mpreg server --demo` with node "busy" and returns it,
// its client URL, and the load of each heartbeat of its node.
func demoServer(t *testing.T) (*daemon, string, <-chan int64) {
	t.Helper()
	port := testcluster.FreePort(t)
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
	return d, url, beats
}

// waitForLoad waits for a heartbeat whose load is (want) or is not (!want)
// zero steps in flight.
func waitForLoad(t *testing.T, beats <-chan int64, busy bool, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case inflight := <-beats:
			if (inflight > 0) == busy {
				return
			}
		case <-deadline:
			t.Fatalf("no heartbeat showed %s", what)
		}
	}
}

// busyServer starts `mpreg server --demo`, sends a call to sleep(ms) and
// returns once the node's heartbeat shows the step in flight. The call's
// result arrives on the returned channel.
func busyServer(t *testing.T, ms int) (*daemon, <-chan result) {
	t.Helper()
	d, url, beats := demoServer(t)
	done := make(chan result, 1)
	go func() {
		done <- mpreg(t, opts{}, "call", "sleep", fmt.Sprint(ms), "slept", "--servers", url, "--timeout", "30s")
	}()
	waitForLoad(t, beats, true, "the sleep step in flight")
	return d, done
}

// Ctrl-C on a call cancels the request in the cluster: the step stops and
// frees its slot at once, instead of running to its end.
func TestInterruptedCallCancelsItsStep(t *testing.T) {
	t.Parallel()
	_, url, beats := demoServer(t)
	call := startDaemon(t, "call", "sleep", "6000", "--servers", url, "--timeout", "30s")
	waitForLoad(t, beats, true, "the sleep step in flight")
	interrupted := time.Now()
	call.stop(t, syscall.SIGINT, 1)
	assert.Contains(t, call.stderr.String(), "CANCELLED")
	waitForLoad(t, beats, false, "the step's slot freed")
	assert.Less(t, time.Since(interrupted), 4*time.Second, "the 6 s step was stopped")
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

// SIGTERM on `mpreg server` while many calls are in flight: every caller
// gets its result, through MPREG's client and through plain nats.go. The
// embedded server used to stop right after the node drained, closing the
// callers' connections with their replies still on the way.
func TestSignalAnswersEveryCaller(t *testing.T) {
	t.Parallel()
	d, url, beats := demoServer(t)
	const k = 16
	done := make(chan error, 2*k)
	for i := range k {
		go func() {
			r := mpreg(t, opts{}, "call", "sleep", "10000", fmt.Sprintf(`"cli-%d"`, i), "--servers", url, "--timeout", "40s")
			if r.code != 0 || r.stdout != fmt.Sprintf("\"cli-%d\"\n", i) {
				done <- fmt.Errorf("mpreg call %d: exit %d: %s%s", i, r.code, r.stdout, r.stderr)
				return
			}
			done <- nil
		}()
		go func() {
			nc, err := nats.Connect(url)
			if err != nil {
				done <- err
				return
			}
			defer nc.Close()
			m, err := nc.Request("mpreg.default.rpc", []byte(fmt.Sprintf(`{"cmds":[{"name":"s","fun":"sleep","args":[10000,"raw-%d"]}]}`, i)), 40*time.Second)
			if err == nil && !strings.Contains(string(m.Data), fmt.Sprintf(`"raw-%d"`, i)) {
				err = fmt.Errorf("raw caller %d: %s", i, m.Data)
			}
			done <- err
		}()
	}
	// The steps sleep 10 s: long enough for 32 callers, each a process of
	// its own on a loaded machine, to have started them all.
	deadline := time.After(30 * time.Second)
	for inflight := int64(0); inflight < 2*k; {
		select {
		case inflight = <-beats:
		case <-deadline:
			t.Fatalf("the steps never showed in a heartbeat (last %d)", inflight)
		}
	}
	d.stop(t, syscall.SIGTERM, 0)
	for range 2 * k {
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("a caller got no answer")
		}
	}
}
