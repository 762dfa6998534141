package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// A node offering a typed Go function, and a client calling it: alone, with
// keyword arguments, and as a step of a request whose steps depend on each
// other. Everything runs on an embedded NATS server on loopback.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, err := bus.Connect(ctx, bus.ConnConfig{InProcess: srv.NATS()})
	if err != nil {
		panic(err)
	}
	defer nc.Close()

	n, err := node.New(nc, node.Config{NodeID: "calc-1", Locs: []string{"cpu"}})
	if err != nil {
		panic(err)
	}
	div := func(_ context.Context, a, b int64) (int64, error) {
		if b == 0 {
			return 0, errors.New("division by zero")
		}
		return a / b, nil
	}
	if err := n.Register("div", div, node.WithParams("a", "b")); err != nil {
		panic(err)
	}
	if err := n.Start(ctx); err != nil {
		panic(err)
	}
	defer n.Close()

	c, err := client.Connect(ctx, client.Config{Dial: bus.ConnConfig{Servers: []string{srv.ClientURL()}}})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	q, err := client.CallAs[int64](ctx, c, "div", []any{84, 2})
	fmt.Println(q, err)

	v, err := c.Call(ctx, "div", nil, client.WithKwargs(map[string]any{"a": 9, "b": 3}), client.WithLocs("cpu"))
	fmt.Println(v, err)

	resp, err := c.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "|half", Fun: "div", Args: []any{100, 2}},
		{Name: "|tenth", Fun: "div", Args: []any{"|half", 5}},
	}})
	fmt.Println(resp.Results, err)

	_, err = c.Call(ctx, "div", []any{1, 0})
	fmt.Println(err, errors.Is(err, schema.ErrFunctionError))

	_, err = c.Call(ctx, "div", []any{1, 2}, client.WithLocs("gpu"))
	fmt.Println(errors.Is(err, schema.ErrNoRoute))
	// Output:
	// 42 <nil>
	// 3 <nil>
	// map[|tenth:10] <nil>
	// FUNCTION_ERROR: division by zero (step div on node calc-1) true
	// true
}
