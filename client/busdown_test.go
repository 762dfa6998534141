package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/schema"
)

// While the client's NATS connection is down, calls fail at once with a
// typed error instead of queueing until their timeout.
func TestCallsFailFastWhileBusIsDown(t *testing.T) {
	srv := testcluster.Server(t)
	testcluster.Node(t, srv.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	c := testcluster.Client(t, srv.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "echo", nil, "n1")
	_, err := c.Call(testwait.Ctx(t), "echo", []any{"up"})
	require.NoError(t, err)

	srv.Shutdown()
	testcluster.WaitFor(t, "the client to notice", func() error {
		if c.Conn().IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	for _, run := range []func() error{
		func() error {
			_, err := c.Call(testwait.Ctx(t), "echo", []any{"down"}, client.WithTimeout(5*time.Second))
			return err
		},
		func() error {
			_, err := c.Run(testwait.Ctx(t), &schema.Request{TimeoutMS: 5000, Cmds: []schema.Command{{Name: "e", Fun: "echo", Args: []any{1}}}})
			return err
		},
	} {
		start := time.Now()
		err := run()
		require.ErrorIs(t, err, schema.ErrNodeUnavailable)
		require.Less(t, time.Since(start), time.Second, "failed fast, not at the 5 s timeout")
	}
}
