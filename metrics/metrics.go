// Package metrics exposes what an MPREG process does to Prometheus: a
// node.Recorder that counts requests, steps and gossip; gauges read from a
// running node, its NATS connection and an embedded nats-server; and the
// HTTP endpoints an operator scrapes and probes (/metrics, /healthz,
// /readyz). Every label value is bounded: codes and gossip kinds are fixed
// lists, functions are the node's registered names, and peers are capped.
package metrics

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/node"
)

// Namespace prefixes every metric name.
const Namespace = "mpreg"

// maxPeers bounds the peer label of mpreg_remote_steps_total: peers beyond
// the first maxPeers seen are counted as "_other".
const maxPeers = 1024

// Request and step latencies: 100 µs to about 100 s.
var latencyBuckets = prometheus.ExponentialBuckets(100e-6, 2.5, 16)

// Recorder is a node.Recorder over Prometheus metrics.
type Recorder struct {
	requests        *prometheus.CounterVec
	requestDuration prometheus.Histogram
	steps           *prometheus.CounterVec
	stepDuration    *prometheus.HistogramVec
	stepQueue       prometheus.Histogram
	remote          *prometheus.CounterVec
	gossip          *prometheus.CounterVec

	mu    sync.Mutex
	peers map[string]bool
}

var _ node.Recorder = (*Recorder)(nil)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewRecorder registers a Recorder's metrics with reg.
func NewRecorder(reg prometheus.Registerer) (*Recorder, error) {
	r := &Recorder{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "requests_total",
			Help: "Requests planned by this node, by outcome: ok or the error code."}, []string{"code"}),
		requestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "request_duration_seconds",
			Help: "Time from a request's receipt by its planner to its reply.", Buckets: latencyBuckets}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "steps_total",
			Help: "Steps executed on this node, by function and outcome: ok or the error code."}, []string{"fun", "code"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "step_duration_seconds",
			Help: "How long a function ran on this node, by function.", Buckets: latencyBuckets}, []string{"fun"}),
		stepQueue: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "step_queue_seconds",
			Help: "How long a step waited for a run slot on this node.", Buckets: latencyBuckets}),
		remote: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "remote_steps_total",
			Help: "Steps this node's planner sent to other nodes, by peer and outcome."}, []string{"peer", "code"}),
		gossip: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "gossip_messages_total",
			Help: "Gossip messages received, by kind: hello, heartbeat, goodbye, sync, info."}, []string{"kind"}),
		peers: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{r.requests, r.requestDuration, r.steps, r.stepDuration, r.stepQueue, r.remote, r.gossip} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The usual series exist before the first event, at zero.
	r.requests.WithLabelValues(node.CodeOK)
	for _, k := range []string{"hello", "heartbeat", "goodbye", "sync"} {
		r.gossip.WithLabelValues(k)
	}
	return r, nil
}

// RequestDone implements node.Recorder.
func (r *Recorder) RequestDone(code string, d time.Duration) {
	r.requests.WithLabelValues(code).Inc()
	if d > 0 {
		r.requestDuration.Observe(d.Seconds())
	}
}

// StepDone implements node.Recorder.
func (r *Recorder) StepDone(fun, code string, run time.Duration) {
	r.steps.WithLabelValues(fun, code).Inc()
	if run > 0 {
		r.stepDuration.WithLabelValues(fun).Observe(run.Seconds())
	}
}

// StepQueued implements node.Recorder.
func (r *Recorder) StepQueued(d time.Duration) { r.stepQueue.Observe(d.Seconds()) }

// RemoteStepDone implements node.Recorder.
func (r *Recorder) RemoteStepDone(peer, code string) {
	r.remote.WithLabelValues(r.peerLabel(peer), code).Inc()
}

// GossipReceived implements node.Recorder.
func (r *Recorder) GossipReceived(kind string) { r.gossip.WithLabelValues(kind).Inc() }

// peerLabel is peer, or "_other" once maxPeers others have been seen.
func (r *Recorder) peerLabel(peer string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[peer] {
		return peer
	}
	if len(r.peers) >= maxPeers {
		return "_other"
	}
	r.peers[peer] = true
	return peer
}

// WatchNode registers the gauges read from a node at each scrape: steps in
// flight and queued, requests being planned, and the nodes of its view by
// state.
func WatchNode(reg prometheus.Registerer, n *node.Node) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "steps_inflight",
			Help: "Steps running or waiting for a run slot on this node."}, func() float64 { return float64(n.Stats().Inflight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "steps_queued",
			Help: "Steps waiting for a run slot on this node."}, func() float64 { return float64(n.Stats().Queued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "requests_planning",
			Help: "Requests this node is planning now."}, func() float64 { return float64(n.Stats().Planning) }),
		peersCollector{n: n, desc: prometheus.NewDesc(Namespace+"_peers",
			"Nodes in this node's view (itself included), by state: alive, draining, dead.", []string{"state"}, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "node_info",
			Help:        "Always 1; the labels name the node.",
			ConstLabels: prometheus.Labels{"node": n.ID(), "cluster": n.Cluster(), "version": node.Version}}, func() float64 { return 1 }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type peersCollector struct {
	n    *node.Node
	desc *prometheus.Desc
}

func (c peersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c peersCollector) Collect(ch chan<- prometheus.Metric) {
	alive, draining, dead := c.n.Table().States()
	for state, v := range map[string]int{"alive": alive, "draining": draining, "dead": dead} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), state)
	}
}

// WatchConn registers the state of a NATS connection: connected (0 or 1)
// and reconnects since it was made.
func WatchConn(reg prometheus.Registerer, nc *nats.Conn) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "nats_connected",
			Help: "1 while the process's NATS connection is up, else 0."}, func() float64 {
			if nc.IsConnected() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "nats_reconnects_total",
			Help: "Times the process's NATS connection reconnected."}, func() float64 { return float64(nc.Stats().Reconnects) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// WatchServer registers an embedded nats-server's own statistics:
// connected clients, and messages in and out.
func WatchServer(reg prometheus.Registerer, s *bus.Server) error {
	return reg.Register(serverCollector{s: s,
		conns: prometheus.NewDesc(Namespace+"_nats_server_connections", "Clients connected to the embedded nats-server.", nil, nil),
		in:    prometheus.NewDesc(Namespace+"_nats_server_in_msgs_total", "Messages the embedded nats-server received.", nil, nil),
		out:   prometheus.NewDesc(Namespace+"_nats_server_out_msgs_total", "Messages the embedded nats-server sent.", nil, nil),
	})
}

type serverCollector struct {
	s              *bus.Server
	conns, in, out *prometheus.Desc
}

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.conns; ch <- c.in; ch <- c.out }

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(c.in, prometheus.CounterValue, float64(st.InMsgs))
	ch <- prometheus.MustNewConstMetric(c.out, prometheus.CounterValue, float64(st.OutMsgs))
}
