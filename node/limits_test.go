package node_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/internal/testcluster"
)

// A short request whose results double at every step (each step lists the
// previous one twice) stands for gigabytes after 40 steps. The node answers
// PAYLOAD_TOO_LARGE quickly, within its budget, and keeps serving.
func TestSharedResultsCannotBlowUp(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	cmds := []string{`{"name":"s0","fun":"echos","args":["x"]}`}
	for i := 1; i <= 40; i++ {
		cmds = append(cmds, fmt.Sprintf(`{"name":"s%d","fun":"echos","args":["s%d","s%d"]}`, i, i-1, i-1))
	}
	start := time.Now()
	resp := rpcJSON(t, nc, `{"timeout_ms": 5000, "cmds": [`+strings.Join(cmds, ",")+`]}`)
	require.Equal(t, "PAYLOAD_TOO_LARGE", wireError(t, resp)["code"], "%v", resp)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, map[string]any{"e": int64(1)}, rpcJSON(t, nc, `{"cmds":[{"name":"e","fun":"echo","args":[1]}]}`)["results"])
}

// A result that does not encode in the caller's codec (NaN in JSON) gets a
// typed error reply, not silence.
func TestUnencodableResultIsAnError(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	body, err := codec.MsgPack.Encode(map[string]any{"cmds": []any{map[string]any{"name": "a", "fun": "echo", "args": []any{math.NaN()}}}})
	require.NoError(t, err)
	m := request(t, nc, rpcSubject, body, nats.Header{"Content-Type": []string{codec.MsgPackType}, "Accept": []string{codec.JSONType}})
	resp := decodeAs(t, m, codec.JSONType)
	require.Equal(t, "FUNCTION_ERROR", wireError(t, resp)["code"], "%v", resp)
}

// An error whose message would not fit the max payload (an unknown $ref of
// 600 kB is echoed in it) is clipped, not dropped.
func TestHugeErrorIsClipped(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	name := strings.Repeat("x", 600_000)
	resp := rpcJSON(t, nc, `{"cmds":[{"name":"a","fun":"echo","args":[{"$ref":"`+name+`"}]}]}`)
	e := wireError(t, resp)
	require.Equal(t, "INVALID_REQUEST", e["code"])
	require.Less(t, len(e["message"].(string)), 2048)
}

// A timeout_ms far above the cap is capped, not overflowed into "already
// expired".
func TestHugeTimeoutIsCapped(t *testing.T) {
	s := testcluster.Server(t)
	testcluster.Node(t, s.ClientURL(), testcluster.NodeConfig(t, "n1"), nil)
	nc := testcluster.Conn(t, s.ClientURL())
	for _, ms := range []string{"9223372036854775807", "10000000000000"} {
		resp := rpcJSON(t, nc, `{"timeout_ms": `+ms+`, "cmds":[{"name":"e","fun":"echo","args":[1]}]}`)
		require.Equal(t, map[string]any{"e": int64(1)}, resp["results"], "timeout_ms %s: %v", ms, resp)
	}
}
