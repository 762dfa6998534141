package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/internal/bench"
)

// benchCmd is `mpreg bench`.
type benchCmd struct {
	Duration     time.Duration `help:"How long each phase of each scenario runs." default:"${bench_duration}"`
	Concurrency  int           `help:"Concurrent requesters in the throughput phase." default:"${bench_concurrency}"`
	Payload      int           `help:"Payload size in bytes." default:"${bench_payload}"`
	Servers      []string      `help:"NATS server URLs, comma-separated (default: an embedded server in this process)." placeholder:"URL"`
	Cluster      string        `help:"Cluster id." default:"bench"`
	Metrics      bool          `help:"Turn on the node's Prometheus metrics, as --metrics-listen does, to measure their cost."`
	Objects      bool          `help:"Add the values-by-reference phase: a value of --object-size made on one node and taken by a step on another, against a raw JetStream object put and get of the same bytes. Needs JetStream (the embedded server runs it, storing in a temporary directory)."`
	ObjectSize   byteSize      `help:"The size of the value of --objects." default:"${bench_object_size}"`
	ObjectRounds int           `help:"Transfers of each kind --objects measures, alternating, after one of each to warm up." default:"${bench_object_rounds}"`
	Durable      bool          `help:"Add the durable scenarios: a one-step request and a 10-step chain with \"durable\": true, each call with an id of its own, in turns with the others, against the same requests without durability. Needs JetStream (the embedded server runs it, storing in a temporary directory)."`
	JS           string        `name:"js" help:"Add the TypeScript phase: the bench scripts of the mpreg npm package in DIR (sdk/js, built with npm run build) measure its caller and its node against nats.js raw request/reply, in Node.js, on this run's servers." placeholder:"DIR" type:"existingdir"`
	authFlags
	inboxFlags
}

// benchVars are the bench defaults shown in --help.
func benchVars() kong.Vars {
	d := bench.DefaultConfig()
	return kong.Vars{
		"bench_duration":      d.Duration.String(),
		"bench_concurrency":   strconv.Itoa(d.Concurrency),
		"bench_payload":       strconv.Itoa(d.PayloadBytes),
		"bench_object_size":   formatByteSize(int64(d.ObjectBytes)),
		"bench_object_rounds": strconv.Itoa(d.ObjectRounds),
	}
}

// Validate checks the cluster id and the NATS authentication flags.
func (c *benchCmd) Validate() error {
	return errors.Join(checkIDs(c.Cluster, ""), c.check())
}

// Run runs the benchmark, printing its report to stdout.
func (c *benchCmd) Run(e *env) error {
	return bench.Run(e.ctx, bench.Config{
		Duration:     c.Duration,
		Concurrency:  c.Concurrency,
		PayloadBytes: c.Payload,
		Servers:      bus.SplitURLs(c.Servers...),
		Cluster:      c.Cluster,
		Auth:         c.auth(),
		InboxPrefix:  c.InboxPrefix,
		Metrics:      c.Metrics,
		Objects:      c.Objects,
		ObjectBytes:  int(c.ObjectSize),
		ObjectRounds: c.ObjectRounds,
		Durable:      c.Durable,
		JS:           c.JS,
	}, e.stdout)
}
