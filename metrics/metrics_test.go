package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/metrics"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// watched is a node with its own registry, as one process has.
type watched struct {
	n   *node.Node
	nc  *nats.Conn
	reg *prometheus.Registry
}

func startWatched(t *testing.T, srv *bus.Server, id string, register func(*node.Node), locs ...string) *watched {
	t.Helper()
	reg := metrics.NewRegistry()
	rec, err := metrics.NewRecorder(reg)
	require.NoError(t, err)
	cfg := testcluster.NodeConfig(t, id, locs...)
	cfg.Hooks.Recorder = rec
	nc := testcluster.Conn(t, srv.ClientURL())
	n := testcluster.StartNode(t, nc, cfg, register)
	require.NoError(t, metrics.WatchNode(reg, n))
	require.NoError(t, metrics.WatchConn(reg, nc))
	return &watched{n: n, nc: nc, reg: reg}
}

// value reads one series from reg: the counter, gauge or histogram count
// named name whose labels include labels; 0 when there is none.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// TestMetricsFollowTraffic: each count moves on the node where the thing
// happened.
func TestMetricsFollowTraffic(t *testing.T) {
	srv := testcluster.Server(t)
	a := startWatched(t, srv, "a", nil)
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	b := startWatched(t, srv, "b", func(n *node.Node) {
		require.NoError(t, n.Register("boom", func() error { return errors.New("boom") }))
		require.NoError(t, n.Register("wait", func(ctx context.Context) error {
			started <- struct{}{}
			select {
			case <-block:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
	}, "b")
	for _, w := range []*watched{a, b} {
		testcluster.WaitForRoute(t, w.n.Table(), "boom", []string{"b"}, "b")
	}
	cl := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: true})
	ctx := context.Background()

	_, err := cl.Call(ctx, "boom", nil, client.WithLocs("b"))
	require.ErrorIs(t, err, schema.ErrFunctionError)
	require.EqualValues(t, 1, value(t, b.reg, "mpreg_steps_total", map[string]string{"fun": "boom", "code": "FUNCTION_ERROR"}),
		"the node that ran the failing step counts it")
	require.Zero(t, value(t, a.reg, "mpreg_steps_total", map[string]string{"fun": "boom"}))
	require.EqualValues(t, 1, value(t, b.reg, "mpreg_step_duration_seconds", map[string]string{"fun": "boom"}))
	plannedByA := value(t, a.reg, "mpreg_requests_total", map[string]string{"code": "FUNCTION_ERROR"})
	plannedByB := value(t, b.reg, "mpreg_requests_total", map[string]string{"code": "FUNCTION_ERROR"})
	require.EqualValues(t, 1, plannedByA+plannedByB, "one planner counts the request")
	require.Equal(t, plannedByA, value(t, a.reg, "mpreg_remote_steps_total", map[string]string{"peer": "b", "code": "FUNCTION_ERROR"}),
		"a planner that sent the step to b counts it")
	require.EqualValues(t, 1, value(t, a.reg, "mpreg_request_duration_seconds", nil)+value(t, b.reg, "mpreg_request_duration_seconds", nil))

	_, err = cl.Call(ctx, "nosuch", nil)
	require.ErrorIs(t, err, schema.ErrNoRoute)
	require.EqualValues(t, 1, value(t, a.reg, "mpreg_requests_total", map[string]string{"code": "NO_ROUTE"})+
		value(t, b.reg, "mpreg_requests_total", map[string]string{"code": "NO_ROUTE"}))

	done := make(chan error, 1)
	go func() { _, err := cl.Call(ctx, "wait", nil); done <- err }()
	testwait.Recv(t, started, "the waiting step to start")
	require.EqualValues(t, 1, value(t, b.reg, "mpreg_steps_inflight", nil))
	close(block)
	require.NoError(t, testwait.Recv(t, done, "the waiting step's reply"))
	testcluster.WaitFor(t, "no step in flight", func() error {
		if v := value(t, b.reg, "mpreg_steps_inflight", nil); v != 0 {
			return fmt.Errorf("%v in flight", v)
		}
		return nil
	})
	require.EqualValues(t, 1, value(t, b.reg, "mpreg_steps_total", map[string]string{"fun": "wait", "code": "ok"}))
	require.GreaterOrEqual(t, value(t, b.reg, "mpreg_step_queue_seconds", nil), 2.0)

	for _, w := range []*watched{a, b} {
		require.EqualValues(t, 2, value(t, w.reg, "mpreg_peers", map[string]string{"state": "alive"}))
		require.Positive(t, value(t, w.reg, "mpreg_gossip_messages_total", map[string]string{"kind": "hello"}))
		require.EqualValues(t, 1, value(t, w.reg, "mpreg_nats_connected", nil))
		require.EqualValues(t, 1, value(t, w.reg, "mpreg_node_info", map[string]string{"node": w.n.ID(), "cluster": "default"}))
	}
	b.n.Close()
	testcluster.WaitFor(t, "b to be dead or gone in a's view", func() error {
		if v := value(t, a.reg, "mpreg_peers", map[string]string{"state": "alive"}); v != 1 {
			return fmt.Errorf("%v alive", v)
		}
		return nil
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // a test on loopback
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestProbes: /readyz is 200 while the node serves and 503 while it drains;
// /healthz stays 200 while NATS is up.
func TestProbes(t *testing.T) {
	srv := testcluster.Server(t)
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	w := startWatched(t, srv, "p", func(n *node.Node) {
		require.NoError(t, n.Register("wait", func() { started <- struct{}{}; <-block }))
	})
	ms, err := metrics.Serve("127.0.0.1:0", w.reg, metrics.Probes{
		Live:  func() error { return nil },
		Ready: w.n.Ready,
	}, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, ms.Close(context.Background())) }()
	base := "http://" + ms.Addr()
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	cl := testcluster.Client(t, srv.ClientURL(), client.Config{})
	done := make(chan error, 1)
	go func() { _, err := cl.Call(context.Background(), "wait", nil); done <- err }()
	testwait.Recv(t, started, "the step to start")
	drained := make(chan error, 1)
	go func() { drained <- w.n.Drain(context.Background()) }()
	testcluster.WaitFor(t, "/readyz to say draining", func() error {
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "node: draining\n" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	close(block)
	require.NoError(t, testwait.Recv(t, done, "the step's reply"))
	require.NoError(t, testwait.Recv(t, drained, "the drain"))
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "node: stopped\n", body)
}

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// in a real scrape of a cluster that served traffic.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/mpreg.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	used := map[string]bool{}
	name := regexp.MustCompile(`\bmpreg_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				used[n] = true
			}
		}
	}
	require.Greater(t, len(used), 10)

	srv := testcluster.Server(t)
	a := startWatched(t, srv, "a", nil)
	require.NoError(t, metrics.WatchServer(a.reg, srv))
	b := startWatched(t, srv, "b", func(n *node.Node) {
		require.NoError(t, n.Register("boom", func() error { return errors.New("boom") }))
	}, "b")
	testcluster.WaitForRoute(t, a.n.Table(), "boom", []string{"b"}, "b")
	cl := testcluster.Client(t, srv.ClientURL(), client.Config{NoFollow: true})
	for range 20 { // the queue group gives a some of them to plan
		_, _ = cl.Call(context.Background(), "boom", nil, client.WithLocs("b"))
	}
	var scrape string // what Prometheus would hold: both nodes' scrapes
	for _, w := range []*watched{a, b} {
		ms, err := metrics.Serve("127.0.0.1:0", w.reg, metrics.Probes{}, nil)
		require.NoError(t, err)
		code, body := get(t, "http://"+ms.Addr()+"/metrics")
		require.NoError(t, ms.Close(context.Background()))
		require.Equal(t, http.StatusOK, code)
		scrape += body
	}
	for n := range used {
		require.True(t, strings.Contains(scrape, "\n"+n+"{") || strings.Contains(scrape, "\n"+n+" "),
			"the dashboard uses %s, which a scrape does not have", n)
	}
}
