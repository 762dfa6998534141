package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
)

// TestLeafNodeSite: an embedded server at a site joins a hub as a NATS leaf
// node; a node there and a node at the hub form one cluster, and a step
// routed by locs crosses the leaf connection either way.
func TestLeafNodeSite(t *testing.T) {
	hub := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{Host: "127.0.0.1", Port: -1, Leaf: bus.LeafConfig{Port: -1}}))
	require.NotEmpty(t, hub.LeafURL())
	site := testcluster.Server(t, testcluster.WithServerConfig(bus.ServerConfig{Host: "127.0.0.1", Port: -1,
		Leaf: bus.LeafConfig{Remotes: []string{hub.LeafURL()}}}))
	testcluster.WaitFor(t, "the leaf connection", func() error {
		if hub.NumLeafNodes() != 1 || site.NumLeafNodes() != 1 {
			return fmt.Errorf("hub %d, site %d leaf connections", hub.NumLeafNodes(), site.NumLeafNodes())
		}
		return nil
	})
	central := testcluster.Node(t, hub.ClientURL(), testcluster.NodeConfig(t, "central", "hub"), func(n *node.Node) {
		require.NoError(t, n.Register("where", func() string { return "hub" }))
	})
	remote := testcluster.Node(t, site.ClientURL(), testcluster.NodeConfig(t, "remote", "site"), func(n *node.Node) {
		require.NoError(t, n.Register("where", func() string { return "site" }))
	})
	testcluster.WaitForRoute(t, central.Table(), "where", []string{"site"}, "remote")
	testcluster.WaitForRoute(t, remote.Table(), "where", []string{"hub"}, "central")

	ctx := context.Background()
	atHub := testcluster.Client(t, hub.ClientURL(), client.Config{NoFollow: true})
	v, err := atHub.Call(ctx, "where", nil, client.WithLocs("site"))
	require.NoError(t, err)
	require.Equal(t, "site", v, "a caller at the hub reaches the site's node")
	atSite := testcluster.Client(t, site.ClientURL(), client.Config{})
	v, err = atSite.Call(ctx, "where", nil, client.WithLocs("hub"))
	require.NoError(t, err)
	require.Equal(t, "hub", v, "a following caller at the site reaches the hub's node")

	_, err = bus.StartServer(bus.ServerConfig{Host: "127.0.0.1", Port: -1, Leaf: bus.LeafConfig{Remotes: []string{"::not a url"}}})
	require.True(t, errors.Is(err, bus.ErrInvalidConfig), "%v", err)
}
