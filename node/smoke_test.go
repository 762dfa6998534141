package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/schema"
)

func TestReadmeExample(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n2", "dataset-a"), nil)
	c := testcluster.Client(t, s.ClientURL(), client.Config{})
	testcluster.WaitForRoute(t, c.Table(), "echos", []string{"dataset-a"}, "n2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Run(ctx, &schema.Request{Cmds: []schema.Command{
		{Name: "|first", Fun: "echo", Args: []any{"hi there!"}},
		{Name: "|second", Fun: "echo", Args: []any{"|first"}},
		{Name: "|third", Fun: "echos", Args: []any{"|first", "AND ME TOO"}, Locs: []string{"dataset-a"}},
	}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"|second": "hi there!", "|third": []any{"hi there!", "AND ME TOO"}}, resp.Results)
	v, err := c.Call(ctx, "echo", []any{int64(1) << 60})
	require.NoError(t, err)
	require.Equal(t, int64(1)<<60, v)
}
