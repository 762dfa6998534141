package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decodeStdlib is the reference the JSON decoder is held to: encoding/json
// with UseNumber, then the number rule and the depth bound.
func decodeStdlib(data []byte) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, tail := dec.Token(); tail != io.EOF {
		return nil, errors.New("trailing data after the value")
	}
	return fromJSON(v, 0)
}

func fromJSON(v any, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errTooDeep
	}
	var err error
	switch t := v.(type) {
	case json.Number:
		return parseNumber(string(t))
	case []any:
		for i := 0; i < len(t) && err == nil; i++ {
			t[i], err = fromJSON(t[i], depth+1)
		}
	case map[string]any:
		for k, e := range t {
			if t[k], err = fromJSON(e, depth+1); err != nil {
				break
			}
		}
	}
	return v, err
}

var jsonSamples = []string{
	`{"cmds":[{"name":"a","fun":"echo","args":[1,-2,3.5,"x",true,false,null,{"$ref":"b"}],"kwargs":{}}],"id":"r1"}`,
	`0`, `-0`, `-0.0`, `1e3`, `1E-3`, `123456789012345678`, `-123456789012345678`, `1234567890123456789`,
	`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `-9223372036854775809`,
	`18446744073709551615`, `18446744073709551616`, `1e400`, `-1e400`, `0.1`, `00`, `01`, `-`, `1.`, `.5`, `1e`, `+1`,
	`"plain"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ude00\ud83d"`,
	`"\ud83d\u0041"`, `"\uZZZZ"`, `"\x"`, "\"a\x01b\"", "\"\xff\xfe\"", "\"caf\xc3\xa9\"", "\"\xc3\"", `"unterminated`,
	`{"a":1,"a":2}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{1:2}`, `{}`, `[]`, ` [ ] `, `{"a":[{"b":[]}]}`,
	`true`, `false`, `null`, `nul`, `tru`, `[true,false,null]`, `1 2`, `{} x`, ``, ` `, `[`, `{"a":`,
	"\t{\n\"k\"\r:\n[ 1 ,\t2 ]\n}\n",
	strings.Repeat("[", 257) + strings.Repeat("]", 257),
	strings.Repeat("[", 258) + strings.Repeat("]", 258),
	strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat(`}`, 300),
}

func checkJSONDecoder(t *testing.T, data []byte) {
	want, werr := decodeStdlib(data)
	got, _, gerr := jsonCodec{}.decode(data, MaxDecoded)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: encoding/json error %v, decoder error %v", data, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: encoding/json %#v, decoder %#v", data, want, got)
	}
	// On a text that is also malformed further on, either error may come
	// first.
	if json.Valid(data) && errors.Is(werr, errTooDeep) != errors.Is(gerr, errTooDeep) {
		t.Fatalf("%q: too deep: encoding/json %v, decoder %v", data, werr, gerr)
	}
}

func TestJSONDecoderMatchesStdlib(t *testing.T) {
	for _, s := range jsonSamples {
		checkJSONDecoder(t, []byte(s))
	}
}

func FuzzJSONDecoderMatchesStdlib(f *testing.F) {
	for _, s := range jsonSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(checkJSONDecoder)
}
