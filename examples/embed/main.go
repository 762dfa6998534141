// Command embed runs a node with a typed Go function and calls the cluster
// with the Go client, against the NATS servers of `mpreg server` given by
// -servers or MPREG_SERVERS (default nats://127.0.0.1:4222):
//
//	MPREG_SERVERS=nats://127.0.0.1:4222 go run ./examples/embed
//
// When no NATS server answers it fails at once, as mpreg does:
// "NODE_UNAVAILABLE: cannot reach NATS at …", exit 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

func main() {
	servers := flag.String("servers", envOr("MPREG_SERVERS", bus.DefaultURL), "NATS server URLs, comma-separated (also MPREG_SERVERS)")
	flag.Parse()
	urls := bus.SplitURLs(*servers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A client, dialed first and once: with no NATS server there, this is
	// NODE_UNAVAILABLE at once, not a wait for the whole budget.
	c, err := client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: urls}, FailFast: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()

	// A node offering a typed Go function, on the cluster of `mpreg server`.
	nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: urls})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = nc.Drain() }()
	n, err := node.New(nc, node.Config{NodeID: "stats-1", Locs: []string{"stats"}})
	if err != nil {
		log.Fatal(err)
	}
	mean := func(_ context.Context, xs []float64) (float64, error) {
		if len(xs) == 0 {
			return 0, fmt.Errorf("mean of nothing")
		}
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		return sum / float64(len(xs)), nil
	}
	if err := n.Register("mean", mean, node.WithParams("xs")); err != nil {
		log.Fatal(err)
	}
	// The typed form: a mistake in the signature does not compile, and the
	// input binds from kwargs by its json field names.
	type rect struct {
		W float64 `json:"w"`
		H float64 `json:"h"`
	}
	area := node.Func(func(_ context.Context, r rect) (float64, error) { return r.W * r.H, nil })
	if err := n.Register("area", area); err != nil {
		log.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = n.Drain(ctx) }()

	// One call, then a DAG whose steps run on different nodes.
	m, err := client.CallAs[float64](ctx, c, "mean", []any{[]float64{1, 2, 3, 4}})
	fmt.Println("mean:", m, err)
	a, err := client.CallAs[float64](ctx, c, "area", nil, client.WithKwargs(map[string]any{"w": 3, "h": 1.5}))
	fmt.Println("area:", a, err)

	resp, err := c.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "|avg", Fun: "mean", Kwargs: map[string]any{"xs": []any{2, 4, 9}}, Locs: []string{"stats"}},
		{Name: "|where", Fun: "whoami", Locs: []string{"dataset-a"}},
		{Name: "|report", Fun: "echos", Args: []any{"|avg", "|where"}},
	}})
	fmt.Println("results:", resp.Results, err)

	_, err = c.Call(ctx, "mean", []any{[]any{}})
	fmt.Println("error:", err, "| is FUNCTION_ERROR:", errors.Is(err, schema.ErrFunctionError))
}

// envOr is the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
