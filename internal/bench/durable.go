package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// The durable scenarios (Config.Durable): client-run and chain-10 with
// "durable": true, each call with an id of its own, so that each is
// recorded in the cluster's durable store before it runs, each step's
// result recorded before its dependent starts, and the outcome recorded
// before the answer (docs/PROTOCOL.md §4.8).
const (
	ScenarioDurable1  = "durable-1"        // client-run, durable
	ScenarioDurable10 = "durable-chain-10" // chain-10, durable
)

// DurableScenarios are the scenarios Config.Durable adds, measured in
// turns with Scenarios.
var DurableScenarios = []string{ScenarioDurable1, ScenarioDurable10}

// What a durable request may cost at p50 beyond the same request without
// durability, on the embedded file store: DurableRequestTarget per
// request plus DurableStepTarget per step; and the durable one-step
// requests DurableRPSTarget requesters (64) must complete each second.
const (
	DurableRequestTarget = time.Millisecond
	DurableStepTarget    = 300 * time.Microsecond
	DurableRPSTarget     = 2000
)

// durableTargets are the durable scenarios' targets; concurrency is the
// throughput phase's requesters (the req/s target is for 64).
func durableTargets(concurrency int) []target {
	return []target{
		{what: ScenarioDurable1 + " p50 - " + ScenarioRPCRun + " p50", num: ScenarioDurable1, den: ScenarioRPCRun,
			over: DurableRequestTarget},
		{what: ScenarioDurable10 + " p50 - " + ScenarioChain10 + " p50", num: ScenarioDurable10, den: ScenarioChain10,
			over: DurableRequestTarget + 10*DurableStepTarget},
		// What each step past the first adds: the chain's overhead less
		// the one-step request's, over the 9 more steps.
		{what: "durable per step: (chain's - one step's) / 9", num: ScenarioDurable10, den: ScenarioChain10,
			base: [2]string{ScenarioDurable1, ScenarioRPCRun}, per: 9, over: DurableStepTarget},
		{what: fmt.Sprintf("%s req/s, %d requesters", ScenarioDurable1, concurrency), num: ScenarioDurable1,
			rps: true, minRPS: DurableRPSTarget},
	}
}

// durableOf is req with durability on (no id: runDurable gives each call
// its own).
func durableOf(req *schema.Request) *schema.Request {
	d := *req
	d.Durable = true
	return &d
}

// durableIDs gives each durable call an id no other call has, in this run
// or any earlier one against the same store: a random prefix per rig and
// a counter.
type durableIDs struct {
	prefix string
	n      atomic.Uint64
}

func newDurableIDs() *durableIDs { return &durableIDs{prefix: "bench-" + nuid.Next() + "-"} }

func (d *durableIDs) next() string { return d.prefix + strconv.FormatUint(d.n.Add(1), 36) }

// runDurable sends a copy of req with an id of its own through client.Run;
// its one result, under key, must be the payload, and its id the one sent.
func (r *rig) runDurable(req *schema.Request, key string) op {
	return func(ctx context.Context) error {
		q := *req
		q.ID = r.durIDs.next()
		resp, err := r.client.Run(ctx, &q)
		if err != nil {
			return err
		}
		if resp.Error != nil {
			return fmt.Errorf("bench: durable request %s: %s: %s", q.ID, resp.Error.Code, resp.Error.Message)
		}
		if s, _ := resp.Results[key].(string); s != r.payload || len(resp.Results) != 1 || resp.ID != q.ID {
			return errMismatch
		}
		return nil
	}
}

// waitDurable waits until node A, which plans the durable scenarios, has
// probed JetStream (and, when it found it, opened the durable store), and
// fails when it has none.
func (r *rig) waitDurable(ctx context.Context) error {
	a := r.nodes[0]
	select {
	case <-a.JetStreamKnown():
	case <-ctx.Done():
		return fmt.Errorf("bench: node %s never finished its JetStream probe: %w", a.ID(), ctx.Err())
	}
	if s := a.JetStream(); s != node.JetStreamAvailable {
		return fmt.Errorf("bench: the durable scenarios need JetStream, which node %s found %s", a.ID(), s)
	}
	return nil
}
