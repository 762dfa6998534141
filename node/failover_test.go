package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
)

// A node told of one NATS server learns another from a peer's
// advertised_urls (the servers do not announce each other: no_advertise)
// and fails over to it when its own server stops.
func TestFailoverToAdvertisedServer(t *testing.T) {
	s1 := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{Cluster: bus.ClusterConfig{Name: "t", Port: -1, NoAdvertise: true}}))
	s2 := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{Cluster: bus.ClusterConfig{Name: "t", Port: -1, NoAdvertise: true,
		Routes: []string{s1.ClusterURL()}}}))
	testcluster.WaitFor(t, "the route", func() error {
		if s1.NumRoutes() == 0 || s2.NumRoutes() == 0 {
			return fmt.Errorf("routes %d, %d", s1.NumRoutes(), s2.NumRoutes())
		}
		return nil
	})

	ncA := testcluster.Conn(t, "", testcluster.WithConnConfig(bus.ConnConfig{Servers: []string{s1.ClientURL()}, ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 50 * time.Millisecond}))
	testcluster.StartNode(t, ncA, testcluster.NodeConfig(t, "a", "here"), func(n *node.Node) {
		require.NoError(t, n.Register("where", func() string { return "a" }))
	})
	testcluster.Node(t, s2.ClientURL(), testcluster.NodeConfig(t, "b"), nil)
	require.Equal(t, []string{s1.ClientURL()}, ncA.Servers(), "no_advertise: NATS announced nothing")

	testcluster.WaitFor(t, "node a to learn server 2 from node b", func() error {
		if !slices.Contains(ncA.Servers(), s2.ClientURL()) {
			return fmt.Errorf("pool %v", ncA.Servers())
		}
		return nil
	})

	s1.Shutdown()
	c := testcluster.Client(t, s2.ClientURL(), client.Config{})
	testcluster.WaitFor(t, "node a to answer through server 2", func() error {
		v, err := c.Call(testwait.Ctx(t), "where", nil, client.WithLocs("here"), client.WithTimeout(500*time.Millisecond))
		if err != nil {
			return err
		}
		if v != "a" {
			return fmt.Errorf("got %v", v)
		}
		return nil
	})
	require.Equal(t, s2.ClientURL(), ncA.ConnectedUrl())
}
