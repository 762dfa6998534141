package node_test

// Config.Validate: every rule it enforces, the field its error names, and
// New refusing what it refuses.

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

func TestConfigValidateAccepts(t *testing.T) {
	for name, cfg := range map[string]node.Config{
		"zero":                            {},
		"defaults":                        node.DefaultConfig(),
		"ack at once":                     {PlannerAckAfter: -1},
		"dead after one beat":             {Gossip: node.Gossip{HeartbeatInterval: time.Second, DeadAfter: time.Second}},
		"forget when dead":                {Gossip: node.Gossip{DeadAfter: 3 * time.Second, ForgetAfter: 3 * time.Second}},
		"slow beat, derived times":        {Gossip: node.Gossip{HeartbeatInterval: 5 * time.Second}},
		"long dead, derived forget":       {Gossip: node.Gossip{DeadAfter: time.Minute}}, // 30 beats are 30 s
		"default timeout = max":           {Limits: node.Limits{DefaultTimeout: time.Minute, MaxTimeout: time.Minute}},
		"results = planning":              {Limits: node.Limits{MaxResultBytes: 1 << 20, MaxPlanningBytes: 1 << 20}},
		"short max, derived default":      {Limits: node.Limits{MaxTimeout: 300 * time.Millisecond}},
		"small planning, derived results": {Limits: node.Limits{MaxPlanningBytes: 1 << 20}},
		"deepest decodable":               {Limits: node.Limits{MaxDepth: codec.MaxDepth}},
		"longest step name":               {Limits: node.Limits{MaxNameLen: node.MaxStepNameLen}},
		"largest protocol integer":        {Limits: node.Limits{MaxQueue: schema.MaxProtoInt}},
	} {
		assert.NoError(t, cfg.Validate(), name)
	}
}

func TestConfigValidateRefuses(t *testing.T) {
	big := int64(schema.MaxProtoInt) + 1
	for _, c := range []struct {
		cfg  node.Config
		want string // what the error says after "node: invalid config: "
	}{
		// Ids, prefix, locs and hello.meta.
		{node.Config{Cluster: "bad*cluster"}, "Cluster: "},
		{node.Config{NodeID: "has space"}, "NodeID: "},
		{node.Config{NodeID: strings.Repeat("n", schema.MaxIDLen+1)}, "NodeID: "},
		{node.Config{Prefix: "a b"}, "Prefix: "},
		{node.Config{Locs: []string{"ok", "two words"}}, "Locs[1]: "},
		{node.Config{Meta: manyMeta(schema.MaxMeta - 1)}, "Meta has 31 entries, at most 30"},
		{node.Config{Meta: map[string]string{strings.Repeat("k", schema.MaxMetaKey+1): "v"}}, "Meta["},
		{node.Config{Meta: map[string]string{"k": strings.Repeat("v", schema.MaxMetaValue+1)}}, "Meta[\"k\"]"},
		{node.Config{Name: strings.Repeat("n", schema.MaxMetaValue+1)}, "Name is 1025 bytes"},

		// Negative values are refused, not taken for the default.
		{node.Config{Gossip: node.Gossip{HeartbeatInterval: -time.Second}}, "Gossip.HeartbeatInterval (-1s) must not be negative"},
		{node.Config{Gossip: node.Gossip{DeadAfter: -time.Second}}, "Gossip.DeadAfter (-1s) must not be negative"},
		{node.Config{Gossip: node.Gossip{ForgetAfter: -time.Second}}, "Gossip.ForgetAfter (-1s) must not be negative"},
		{node.Config{Gossip: node.Gossip{SyncQuiet: -time.Second}}, "Gossip.SyncQuiet (-1s) must not be negative"},
		{node.Config{Objects: node.Objects{JetStreamProbe: -time.Second}}, "Objects.JetStreamProbe (-1s) must not be negative"},
		{node.Config{Limits: node.Limits{MaxCommands: -1}}, "Limits.MaxCommands (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxNameLen: -1}}, "Limits.MaxNameLen (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxDepth: -1}}, "Limits.MaxDepth (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxRequests: -1}}, "Limits.MaxRequests (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxInflight: -1}}, "Limits.MaxInflight (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxQueue: -1}}, "Limits.MaxQueue (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxBytesInFlight: -1}}, "Limits.MaxBytesInFlight (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxPlanningBytes: -1}}, "Limits.MaxPlanningBytes (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxResultBytes: -1}}, "Limits.MaxResultBytes (-1) must not be negative"},
		{node.Config{Limits: node.Limits{MaxWaiting: -1}}, "Limits.MaxWaiting (-1) must not be negative"},
		{node.Config{Limits: node.Limits{DefaultTimeout: -time.Second}}, "Limits.DefaultTimeout (-1s)"},
		{node.Config{Limits: node.Limits{MaxTimeout: -time.Second}}, "Limits.MaxTimeout (-1s) must not be negative"},
		{node.Config{Objects: node.Objects{InlineMax: -1}}, "Objects.InlineMax (-1) must not be negative"},
		{node.Config{Objects: node.Objects{MaxBytes: -1}}, "Objects.MaxBytes (-1) must not be negative"},
		{node.Config{Objects: node.Objects{Cache: -1}}, "Objects.Cache (-1) must not be negative"},
		{node.Config{Objects: node.Objects{MaxPendingDeletes: -1}}, "Objects.MaxPendingDeletes (-1) must not be negative"},
		{node.Config{Objects: node.Objects{TTL: -time.Second}}, "Objects.TTL (-1s) must not be negative"},
		{node.Config{Objects: node.Objects{ResultTTL: -time.Second}}, "Objects.ResultTTL (-1s) must not be negative"},

		// Bounds sent on the wire stay protocol integers.
		{node.Config{Limits: node.Limits{MaxInflight: math.MaxInt}}, "Limits.MaxInflight (9223372036854775807) must be at most 9007199254740991"},
		{node.Config{Limits: node.Limits{MaxPlanningBytes: big, MaxResultBytes: 1}}, "Limits.MaxPlanningBytes (9007199254740992) must be at most"},

		// Fields against each other.
		{node.Config{Gossip: node.Gossip{DeadAfter: 200 * time.Millisecond}},
			"Gossip.DeadAfter (200ms) must be at least Gossip.HeartbeatInterval (1s)"},
		{node.Config{Gossip: node.Gossip{HeartbeatInterval: time.Second, DeadAfter: 5 * time.Second, ForgetAfter: 4 * time.Second}},
			"Gossip.ForgetAfter (4s) must be at least Gossip.DeadAfter (5s)"},
		{node.Config{Gossip: node.Gossip{ForgetAfter: 2 * time.Second}}, // DeadAfter defaults to 3 beats
			"Gossip.ForgetAfter (2s) must be at least Gossip.DeadAfter (3s)"},
		{node.Config{Limits: node.Limits{DefaultTimeout: time.Hour}},
			"Limits.DefaultTimeout (1h0m0s) must be at most Limits.MaxTimeout (10m0s)"},
		{node.Config{Limits: node.Limits{MaxResultBytes: 2 << 30}},
			"Limits.MaxResultBytes (2147483648) must be at most Limits.MaxPlanningBytes (1073741824)"},
		{node.Config{Limits: node.Limits{MaxResultBytes: 512 << 20, MaxPlanningBytes: 1 << 20}},
			"Limits.MaxResultBytes (536870912) must be at most Limits.MaxPlanningBytes (1048576)"},
		{node.Config{Limits: node.Limits{DefaultTimeout: time.Second, MaxTimeout: 300 * time.Millisecond}},
			"Limits.DefaultTimeout (1s) must be at most Limits.MaxTimeout (300ms)"},
		{node.Config{Limits: node.Limits{MaxDepth: codec.MaxDepth + 1}},
			"Limits.MaxDepth (257) must be at most 256"},
		{node.Config{Limits: node.Limits{MaxNameLen: node.MaxStepNameLen + 1}},
			"Limits.MaxNameLen (768) must be at most 767"},
		{node.Config{Objects: node.Objects{InlineMax: 2 << 20, MaxBytes: 1 << 20}},
			"Objects.InlineMax (2097152) must be at most Objects.MaxBytes (1048576)"},
		{node.Config{Objects: node.Objects{TTL: 500 * time.Millisecond}}, "Objects.TTL (500ms) must be at least 1s"},
	} {
		err := c.cfg.Validate()
		require.ErrorIs(t, err, node.ErrInvalidConfig, c.want)
		assert.Contains(t, err.Error(), "node: invalid config: "+c.want)
	}
}

// manyMeta returns n meta entries.
func manyMeta(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[strings.Repeat("k", i+1)] = "v"
	}
	return m
}

// The node and planner bounds have one source.
func TestConfigDefaultsAgreeWithPlanner(t *testing.T) {
	d := node.DefaultConfig()
	pl := planner.DefaultLimits()
	assert.Equal(t, int64(planner.DefaultMaxResultBytes), d.Limits.MaxResultBytes)
	assert.Equal(t, planner.DefaultMaxWaiting, d.Limits.MaxWaiting)
	assert.Equal(t, pl.MaxCommands, d.Limits.MaxCommands)
	assert.Equal(t, pl.MaxNameLen, d.Limits.MaxNameLen)
	assert.Equal(t, pl.MaxDepth, d.Limits.MaxDepth)
	assert.LessOrEqual(t, d.Limits.MaxResultBytes, d.Limits.MaxPlanningBytes)
}

// New checks the config with Validate and leaves the caller's alone.
func TestNewValidates(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	cfg := node.Config{NodeID: "n1", Gossip: node.Gossip{HeartbeatInterval: time.Second, DeadAfter: time.Millisecond}}
	_, err := node.New(nc, cfg)
	require.ErrorIs(t, err, node.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "Gossip.DeadAfter")

	cfg = node.Config{NodeID: "n1", Limits: node.Limits{MaxQueue: -1}}
	_, err = node.New(nc, cfg)
	require.ErrorIs(t, err, node.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "Limits.MaxQueue (-1)")

	cfg = node.Config{NodeID: "n1", Locs: []string{"a"}}
	n, err := node.New(nc, cfg)
	require.NoError(t, err)
	n.Close()
	assert.Equal(t, node.Config{NodeID: "n1", Locs: []string{"a"}}, cfg, "the caller's config is untouched")
}
