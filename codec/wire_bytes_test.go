package codec

import (
	"encoding/hex"
	"testing"

	"github.com/mpreg/mpreg/schema"
)

// protocolExamples are the bodies of docs/PROTOCOL.md's examples (§4–§7),
// each map that is not a wire struct cut to one key, so that MessagePack
// (which writes a map in Go's map order) gives the same bytes every time.
var protocolExamples = []struct {
	name          string
	v             any
	json, msgpack string // msgpack in hex
}{
	{"request", &schema.Request{ID: "readme-1", Cmds: []schema.Command{
		{Name: "|first", Fun: "echo", Args: []any{"hi there!"}},
		{Name: "|second", Fun: "echo", Args: []any{"|first"}},
		{Name: "|third", Fun: "echos", Args: []any{"|first", "AND ME TOO"}, Kwargs: map[string]any{}, Locs: []string{"dataset-a"}},
	}, TimeoutMS: 5000, DeadlineMS: 1796000005000, Results: "sinks"},
		`{"cmds":[{"args":["hi there!"],"fun":"echo","name":"|first"},{"args":["|first"],"fun":"echo","name":"|second"},{"args":["|first","AND ME TOO"],"fun":"echos","locs":["dataset-a"],"name":"|third"}],"deadline_ms":1796000005000,"id":"readme-1","results":"sinks","timeout_ms":5000}`,
		"df00000005a26964a8726561646d652d31a4636d647393df00000003a46e616d65a67c6669727374a366756ea46563686fa46172677391a9686920746865726521df00000003a46e616d65a77c7365636f6e64a366756ea46563686fa46172677391a67c6669727374df00000004a46e616d65a67c7468697264a366756ea56563686f73a46172677392a67c6669727374aa414e44204d4520544f4fa46c6f637391a9646174617365742d61aa74696d656f75745f6d73cd1388ab646561646c696e655f6d73cf000001a229f13b88a7726573756c7473a573696e6b73"},
	{"response", &schema.Response{ID: "readme-1", Results: map[string]any{"|third": []any{"hi there!", "AND ME TOO"}}},
		`{"id":"readme-1","results":{"|third":["hi there!","AND ME TOO"]}}`,
		"df00000002a26964a8726561646d652d31a7726573756c747381a67c746869726492a9686920746865726521aa414e44204d4520544f4f"},
	{"response with error", &schema.Response{ID: "r2", Results: map[string]any{"|first": "hi there!"},
		Error: &schema.Error{Code: schema.CodeTimeout, Message: "step |second timed out", Step: "|second", Node: "n1"}},
		`{"error":{"code":"TIMEOUT","message":"step |second timed out","node":"n1","step":"|second"},"id":"r2","results":{"|first":"hi there!"}}`,
		"df00000003a26964a27232a7726573756c747381a67c6669727374a9686920746865726521a56572726f72df00000004a4636f6465a754494d454f5554a76d657373616765b673746570207c7365636f6e642074696d6564206f7574a473746570a77c7365636f6e64a46e6f6465a26e31"},
	{"response with trace", &schema.Response{ID: "t1", Results: map[string]any{"a": 1.5}, Trace: []schema.TraceEntry{
		{Step: "a", Fun: "f", Node: "n1", Attempt: 1, StartUS: 12, QueueUS: 3, RunUS: 40}}},
		`{"id":"t1","results":{"a":1.5},"trace":[{"attempt":1,"code":"","fun":"f","node":"n1","queue_us":3,"run_us":40,"start_us":12,"step":"a"}]}`,
		"df00000003a26964a27431a7726573756c747381a161cb3ff8000000000000a5747261636591df00000008a473746570a161a366756ea166a46e6f6465a26e31a7617474656d707401a873746172745f75730ca871756575655f757303a672756e5f757328a4636f6465a0"},
	{"planner ack", schema.PlannerAck{Cluster: "default", ID: "r1", Planner: "n1", Incarnation: 1796000000123, Instance: "xNw7AkhX0pVhbGUdq3pXUO"},
		`{"cluster":"default","id":"r1","incarnation":1796000000123,"instance":"xNw7AkhX0pVhbGUdq3pXUO","planner":"n1"}`,
		"df00000005a7636c7573746572a764656661756c74a26964a27231a7706c616e6e6572a26e31ab696e6361726e6174696f6ecf000001a229f1287ba8696e7374616e6365b6784e7737416b6858307056686247556471337058554f"},
	{"exec request", &schema.ExecRequest{Cluster: "default", ID: "readme-1/|third", Fun: "echos", Args: []any{"hi there!", "AND ME TOO"},
		Kwargs: map[string]any{}, DeadlineMS: 1796000005000, Attempt: "Xb2sBzOe3Dn8hQOl4b5Ff9.1a"},
		`{"args":["hi there!","AND ME TOO"],"attempt":"Xb2sBzOe3Dn8hQOl4b5Ff9.1a","cluster":"default","deadline_ms":1796000005000,"fun":"echos","id":"readme-1/|third","kwargs":{}}`,
		"df00000007a7636c7573746572a764656661756c74a26964af726561646d652d312f7c7468697264a366756ea56563686f73a46172677392a9686920746865726521aa414e44204d4520544f4fa66b776172677380ab646561646c696e655f6d73cf000001a229f13b88a7617474656d7074b958623273427a4f6533446e3868514f6c3462354666392e3161"},
	{"exec result", schema.ExecResult{Result: []any{"hi there!", "AND ME TOO"}, Timing: &schema.StepTiming{QueueUS: 7, RunUS: 120}},
		`{"result":["hi there!","AND ME TOO"],"timing":{"queue_us":7,"run_us":120}}`,
		"df00000002a6726573756c7492a9686920746865726521aa414e44204d4520544f4fa674696d696e67df00000002a871756575655f757307a672756e5f757378"},
	{"exec error", schema.ExecError{Error: &schema.Error{Code: schema.CodeNoRoute, Message: "no node offers f", Details: map[string]any{"fun": "f"}}},
		`{"error":{"code":"NO_ROUTE","details":{"fun":"f"},"message":"no node offers f"}}`,
		"df00000001a56572726f72df00000003a4636f6465a84e4f5f524f555445a76d657373616765b06e6f206e6f6465206f66666572732066a764657461696c7381a366756ea166"},
	{"cancel", schema.Cancel{Cluster: "default", ID: "readme-1/|third", Attempt: "Xb2sBzOe3Dn8hQOl4b5Ff9.1a"},
		`{"attempt":"Xb2sBzOe3Dn8hQOl4b5Ff9.1a","cluster":"default","id":"readme-1/|third"}`,
		"df00000003a7636c7573746572a764656661756c74a26964af726561646d652d312f7c7468697264a7617474656d7074b958623273427a4f6533446e3868514f6c3462354666392e3161"},
	{"hello", &schema.Hello{Cluster: "default", Node: "n1-4KX2QZ", Incarnation: 1796000000123, Instance: "xNw7AkhX0pVhbGUdq3pXUO",
		Version: 3, Funs: map[string][]string{"predict": {"model-a", "gpu"}}, Codecs: []string{MsgPackType, JSONType}, Bare: MsgPackType,
		AdvertisedURLs: []string{"nats://10.0.0.5:4222"}, Meta: map[string]string{"name": "worker one"}, Proto: 1,
		Idempotent: []string{"echo", "echos"}, RetryAfterMS: map[string]int64{"lookup": 100}},
		`{"advertised_urls":["nats://10.0.0.5:4222"],"bare":"application/msgpack","cluster":"default","codecs":["application/msgpack","application/json"],"funs":{"predict":["model-a","gpu"]},"idempotent":["echo","echos"],"incarnation":1796000000123,"instance":"xNw7AkhX0pVhbGUdq3pXUO","meta":{"name":"worker one"},"node":"n1-4KX2QZ","proto":1,"retry_after_ms":{"lookup":100},"version":3}`,
		"df0000000da7636c7573746572a764656661756c74a46e6f6465a96e312d344b5832515aab696e6361726e6174696f6ecf000001a229f1287ba8696e7374616e6365b6784e7737416b6858307056686247556471337058554fa776657273696f6e03a466756e7381a77072656469637492a76d6f64656c2d61a3677075a6636f6465637392b36170706c69636174696f6e2f6d73677061636bb06170706c69636174696f6e2f6a736f6ea462617265b36170706c69636174696f6e2f6d73677061636baf616476657274697365645f75726c7391b46e6174733a2f2f31302e302e302e353a34323232a46d65746181a46e616d65aa776f726b6572206f6e65a570726f746f01aa6964656d706f74656e7492a46563686fa56563686f73ae72657472795f61667465725f6d7381a66c6f6f6b757064"},
	{"heartbeat", schema.Heartbeat{Cluster: "default", Node: "n1-4KX2QZ", Incarnation: 1796000000123, Instance: "xNw7AkhX0pVhbGUdq3pXUO",
		Version: 3, Seq: 42, Load: schema.Load{Inflight: 2, Limit: 256}},
		`{"cluster":"default","incarnation":1796000000123,"instance":"xNw7AkhX0pVhbGUdq3pXUO","load":{"inflight":2,"limit":256},"node":"n1-4KX2QZ","seq":42,"version":3}`,
		"df00000007a7636c7573746572a764656661756c74a46e6f6465a96e312d344b5832515aab696e6361726e6174696f6ecf000001a229f1287ba8696e7374616e6365b6784e7737416b6858307056686247556471337058554fa776657273696f6e03a37365712aa46c6f6164df00000002a8696e666c6967687402a56c696d6974cd0100"},
}

// TestProtocolExamplesBytes pins the bytes both codecs write for the
// protocol's examples.
func TestProtocolExamplesBytes(t *testing.T) {
	for _, ex := range protocolExamples {
		t.Run(ex.name, func(t *testing.T) {
			j, err := JSON.Encode(ex.v)
			if err != nil {
				t.Fatal(err)
			}
			m, err := MsgPack.Encode(ex.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(j) != ex.json {
				t.Errorf("JSON\n got %s\nwant %s", j, ex.json)
			}
			if got := hex.EncodeToString(m); got != ex.msgpack {
				t.Errorf("MessagePack\n got %s\nwant %s", got, ex.msgpack)
			}
		})
	}
}
