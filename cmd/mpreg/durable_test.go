package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/demo"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// The durable commands against a real node on a NATS server with
// JetStream (docs/PROTOCOL.md §4.8); every mpreg below is a fresh process.

// durableCluster starts a NATS server, with JetStream when asked, and node
// "n1" with the demo functions, and returns the client URL.
func durableCluster(t *testing.T, jetStream bool) string {
	t.Helper()
	var o []testcluster.ServerOption
	if jetStream {
		o = append(o, testcluster.WithJetStream(t.TempDir()))
	}
	s := testcluster.Server(t, o...)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), func(n *node.Node) {
		require.NoError(t, demo.Register(n))
	})
	return s.ClientURL()
}

const durableRequest = `{"cmds":[
	{"name":"|a","fun":"sleep","args":[300,"hi"]},
	{"name":"b","fun":"upper","args":["|a"]}]}`

// submit, status, get, get --wait: the response mpreg run prints.
func TestDurableCommands(t *testing.T) {
	t.Parallel()
	url := durableCluster(t, true)
	r := mpreg(t, opts{stdin: durableRequest}, "submit", "-", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	id := strings.TrimSuffix(r.stdout, "\n")
	require.NotEmpty(t, id)

	r = mpreg(t, opts{}, "status", id, "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^(accepted|running  planner=n1|done  planner=n1)  steps [0-2]/2\n$`, r.stdout)

	r = mpreg(t, opts{}, "get", id, "--servers", url, "--wait", "--timeout", "10s")
	require.Equal(t, 0, r.code, r.stderr)
	want := `{"id":"` + id + `","results":{"b":"HI"}}`
	assert.Equal(t, decode(t, want), decode(t, r.stdout))

	r = mpreg(t, opts{}, "get", id, "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, want), decode(t, r.stdout))

	r = mpreg(t, opts{}, "status", id, "--servers", url, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"`+id+`","status":"done","planner":"n1","steps_done":2,"steps":2,"result":{"b":"HI"}}`),
		decode(t, r.stdout))

	r = mpreg(t, opts{}, "status", "never-submitted", "--servers", url)
	assert.Equal(t, exitError, r.code)
	assert.Equal(t, "unknown\n", r.stdout)
}

// get on a request still running, without --wait: exit 1, saying so.
func TestDurableGetNotEnded(t *testing.T) {
	t.Parallel()
	url := durableCluster(t, true)
	r := mpreg(t, opts{stdin: `{"id":"long","cmds":[{"name":"s","fun":"sleep","args":[5000,"x"]}]}`}, "submit", "-", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "long\n", r.stdout)
	r = mpreg(t, opts{}, "get", "long", "--servers", url)
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.Regexp(t, `^mpreg: durable request "long" has not ended: (accepted|running on n1), 0 of 1 steps done \(mpreg get --wait waits for it\)\n$`, r.stderr)
}

// run --durable prints the response as run does; get prints it again.
func TestRunDurable(t *testing.T) {
	t.Parallel()
	url := durableCluster(t, true)
	r := mpreg(t, opts{stdin: `{"id":"d1","cmds":[{"name":"u","fun":"upper","args":["x"]}]}`}, "run", "-", "--durable", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"d1","results":{"u":"X"}}`), decode(t, r.stdout))
	r = mpreg(t, opts{}, "get", "d1", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"d1","results":{"u":"X"}}`), decode(t, r.stdout))
}

// Without JetStream, submit fails within 2 s: STORE_UNAVAILABLE, exit 1.
func TestSubmitWithoutJetStream(t *testing.T) {
	t.Parallel()
	url := durableCluster(t, false)
	start := time.Now()
	r := mpreg(t, opts{stdin: durableRequest}, "submit", "-", "--servers", url)
	assert.Equal(t, exitError, r.code)
	assert.Empty(t, r.stdout)
	assert.True(t, strings.HasPrefix(r.stderr, "STORE_UNAVAILABLE: "), r.stderr)
	assert.Contains(t, r.stderr, "JetStream")
	assert.Less(t, time.Since(start), 2*time.Second+time.Second, "2 s, and the process's start")
}

// A planner process killed with SIGKILL in the middle of a durable chain:
// the other node takes the request over within the lease's TTL and 2 s,
// runs only what was not recorded, and a fresh process fetches the
// outcome.
func TestDurablePlannerKilled(t *testing.T) {
	t.Parallel()
	url := testcluster.Server(t, testcluster.WithJetStream(t.TempDir())).ClientURL()
	planner := startDaemon(t, "node", "--servers", url, "--node-id", "pa", "--demo", "--locs", "plan")
	worker := startDaemon(t, "node", "--servers", url, "--node-id", "wb", "--demo", "--locs", "work")
	for _, d := range []*daemon{planner, worker} {
		d.waitFor(t, "the node to serve durable requests", func() error {
			if out := d.stderr.String(); !strings.Contains(out, "durable requests available") || !strings.Contains(out, "node started") {
				return errors.New("not yet")
			}
			return nil
		})
	}
	nc := testcluster.Conn(t, url)
	try := func(subject, body string) (map[string]any, error) {
		m, err := nc.Request(subject, []byte(body), 2*time.Second)
		if err != nil {
			return nil, err
		}
		var v map[string]any
		return v, json.Unmarshal(m.Data, &v)
	}
	ask := func(subject, body string) map[string]any {
		t.Helper()
		v, err := try(subject, body)
		require.NoError(t, err, subject)
		return v
	}
	a := ask("mpreg.default.node.pa.rpc", `{"id":"kill-1","durable":true,"submit":true,"timeout_ms":60000,"route_wait_ms":5000,"cmds":[
		{"name":"|first","fun":"tally","args":["kill-1"],"locs":["work"]},
		{"name":"|slow","fun":"sleep","args":[1000,"|first"],"locs":["work"]},
		{"name":"|last","fun":"echos","args":["|slow"],"locs":["work"]}]}`)
	require.Equal(t, "accepted", a["status"], "%v", a)
	planner.waitFor(t, "the first step recorded", func() error {
		st := ask("mpreg.default.status", `{"id":"kill-1"}`)
		if st["status"] != "running" || st["planner"] != "pa" || st["steps_done"] != float64(1) {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	require.NoError(t, planner.cmd.Process.Kill()) // SIGKILL: no goodbye, no lease released
	killed := time.Now()
	testcluster.WaitFor(t, "the request to finish elsewhere", func() error {
		// The first query may reach the killed node's subscription
		// before its server has seen the socket close: it is lost.
		st, err := try("mpreg.default.status", `{"id":"kill-1","wait_ms":500}`)
		if err != nil {
			return err
		}
		if st["status"] != "done" {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("done %v after its planner was killed", took.Round(time.Millisecond))
	// The lease's TTL and 2 s, and the step that was running when the
	// planner died, which runs again (1 s).
	assert.Less(t, took, 3*time.Second+2*time.Second+time.Second, "taken over within the lease's TTL and 2 s, plus the step run again")

	r := mpreg(t, opts{}, "get", "kill-1", "--servers", url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, decode(t, `{"id":"kill-1","results":{"|last":[1]}}`), decode(t, r.stdout))
	r = mpreg(t, opts{}, "status", "kill-1", "--servers", url)
	assert.Equal(t, "done  planner=wb  steps 3/3\n", r.stdout)
	r = mpreg(t, opts{}, "call", "tally", "kill-1", "--loc", "work", "--servers", url)
	assert.Equal(t, "2\n", r.stdout, "the step recorded before the kill did not run again")
}
