package codec

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/mpreg/mpreg/schema"
)

// refFloat is a float64 that encoding/json writes with a fraction when it
// is integral: the reference for the encoder's floats.
type refFloat float64

func (f refFloat) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(float64(f))
	if err == nil && !strings.ContainsAny(string(b), ".e") {
		b = append(b, '.', '0')
	}
	return b, err
}

func refFloats(v any) any {
	switch t := v.(type) {
	case float64:
		return refFloat(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = refFloats(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = refFloats(x)
		}
		return out
	}
	return v
}

// encodeStdlib is the reference the JSON encoder is held to: the tree
// normalized, written by encoding/json without HTML escaping.
func encodeStdlib(v any) ([]byte, error) {
	t, err := Normalize(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(refFloats(t)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func checkJSONEncoder(t *testing.T, v any) {
	t.Helper()
	want, werr := encodeStdlib(v)
	got, gerr := JSON.Encode(v)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%#v: encoding/json error %v, encoder error %v", v, werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("%#v:\nencoding/json %s\nencoder       %s", v, want, got)
	}
}

func TestJSONEncoderMatchesStdlib(t *testing.T) {
	for _, v := range []any{
		nil, true, false, int64(-3), uint64(math.MaxUint64), 0.0, math.Copysign(0, -1), 1.0, 1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.0, -2.5e-10,
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1),
		"", "plain", "q\"b\\s/", "\b\f\n\r\t\x00\x1f\x7f", "<>&", "caf\xc3\xa9", "\xff\xfe", "\u2028\u2029", "中文😀",
		[]byte{}, []byte("bin\x00"), []byte(nil), []any{}, []any(nil), map[string]any{}, map[string]any(nil),
		map[string]any{"b": 1.0, "a": []any{int64(1), "x", nil, map[string]any{"z": []byte("q"), "\xff": "k"}}},
		[]string{"a", "b"}, []string(nil), []int{1, 2}, map[string]int{"x": 1}, struct {
			A int     `json:"a"`
			B float64 `json:"b"`
		}{1, 2},
		&schema.Response{ID: "r", Results: map[string]any{"s": 1.0}},
		&schema.Request{ID: "x", Cmds: []schema.Command{{Name: "a", Fun: "f", Args: []any{"b", 2.0}, Locs: []string{"gpu"}}}, TimeoutMS: 5},
		(*schema.Response)(nil),
		&schema.Response{ID: "e", Results: map[string]any{}, Error: &schema.Error{Code: "TIMEOUT", Message: "m", Details: map[string]any{"k": int64(1)}}},
	} {
		checkJSONEncoder(t, v)
	}
}

// FuzzJSONEncoderMatchesStdlib encodes what the decoder reads from the
// fuzzed text, and the strings of it, both ways.
func FuzzJSONEncoderMatchesStdlib(f *testing.F) {
	for _, s := range jsonSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkJSONEncoder(t, string(data))
		if v, err := jsonDocument(data); err == nil {
			checkJSONEncoder(t, v)
		}
	})
}
