package codec

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mpreg/mpreg/schema"
)

// encodeSamples are typical bodies: the reply to a one-step request, an
// exec request between nodes, and the reply to a 16-step request with its
// trace.
func encodeSamples() map[string]any {
	payload := strings.Repeat("x", 64)
	results := map[string]any{}
	trace := make([]schema.TraceEntry, 16)
	for i := range 16 {
		name := "s" + strconv.Itoa(i)
		results[name] = map[string]any{"v": payload, "n": int64(i), "f": 1.5}
		trace[i] = schema.TraceEntry{Step: name, Fun: "echo", Node: "node-a", Attempt: 1, StartUS: int64(10 * i), QueueUS: 3, RunUS: 41}
	}
	return map[string]any{
		"response": &schema.Response{ID: "r-1", Results: map[string]any{"r": payload}},
		"exec": &schema.ExecRequest{Cluster: "bench", ID: "r-1/r", Fun: "echo", Args: []any{payload},
			DeadlineMS: 1764979200123, Attempt: "a1b2c3", Timing: true},
		"response-16-trace": &schema.Response{ID: "r-2", Results: results, Trace: trace},
	}
}

// BenchmarkEncode encodes each sample with each codec.
func BenchmarkEncode(b *testing.B) {
	for _, name := range []string{"response", "exec", "response-16-trace"} {
		v := encodeSamples()[name]
		for _, c := range []Codec{JSON, MsgPack} {
			b.Run(name+"/"+strings.TrimPrefix(c.ContentType(), "application/"), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Encode(v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecode decodes each sample, as each codec encodes it, into the
// value tree.
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"response", "exec", "response-16-trace"} {
		v := encodeSamples()[name]
		for _, c := range []Codec{JSON, MsgPack} {
			body, err := c.Encode(v)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name+"/"+strings.TrimPrefix(c.ContentType(), "application/"), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := DecodeSized(c, body, MaxDecoded); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
