package schema_test

import (
	"reflect"
	"testing"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// readGeneral reads a heartbeat body the general way: a tree, then
// ParseHeartbeat.
func readGeneral(data []byte) (*schema.Heartbeat, error) {
	tree, err := codec.JSON.Decode(data)
	if err != nil {
		return nil, err
	}
	return schema.ParseHeartbeat(tree)
}

var heartbeatBodies = []string{
	`{"cluster":"c","node":"n1","incarnation":1795980084459,"instance":"abc","version":4,"seq":9,"load":{"inflight":3,"limit":4096}}`,
	` { "load" : { "limit" : 1 , "inflight" : 0 } , "version" : 0 , "node" : "n-1" , "cluster" : "c_2" , "incarnation" : 1 } `,
	`{"cluster":"c","node":"n","incarnation":1,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0,"seq":-5,"load":{}}`,
	// Off the fast path: the general way decides.
	`{"cluster":"c","node":"n","incarnation":1,"version":0,"extra":[1,2]}`,
	`{"cluster":"c","node":"n","incarnation":1.0,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":1e3,"version":0}`,
	`{"cluster":"c","node":"n\u0031","incarnation":1,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0,"instance":null}`,
	`{"cluster":"c","node":"n","node":"m","incarnation":1,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":01,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":-0,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":0,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":9007199254740992,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0,"load":{"inflight":1,"queued":2}}`,
	`{"cluster":"c","node":"n.x","incarnation":1,"version":0}`,
	`{"cluster":"c","node":"n","incarnation":1}`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0}x`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0,}`,
	`{"cluster":"c","node":"n","incarnation":1,"version":0,"instance":"` + string(make([]byte, 0)) + `0123456789012345678901234567890123456789012345678901234567890123456789"}`,
	`[]`, ``, `{`, `{"cluster":"c"`,
}

// TestReadHeartbeatJSON: what the fast path reads is what the general way
// reads, and the bodies nodes write take the fast path.
func TestReadHeartbeatJSON(t *testing.T) {
	for i, body := range heartbeatBodies {
		checkHeartbeatPaths(t, []byte(body))
		if _, ok := schema.ReadHeartbeatJSON([]byte(body)); ok != (i < 4) {
			t.Errorf("%s: fast path %v, want %v", body, ok, i < 4)
		}
	}
	data, err := codec.JSON.Encode(&schema.Heartbeat{Cluster: "c", Node: "n", Incarnation: 7, Instance: "i", Version: 2, Seq: 3,
		Load: schema.Load{Inflight: 1, Limit: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := schema.ReadHeartbeatJSON(data); !ok {
		t.Errorf("a node's own heartbeat %s is off the fast path", data)
	}
}

func checkHeartbeatPaths(t *testing.T, data []byte) {
	fast, ok := schema.ReadHeartbeatJSON(data)
	if !ok {
		return
	}
	general, err := readGeneral(data)
	if err != nil {
		t.Fatalf("%q: the fast path reads %+v, the general way refuses: %v", data, fast, err)
	}
	if !reflect.DeepEqual(fast, general) {
		t.Fatalf("%q: fast path %+v, general way %+v", data, fast, general)
	}
}

func FuzzReadHeartbeatJSON(f *testing.F) {
	for _, b := range heartbeatBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(checkHeartbeatPaths)
}
