package codec

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

// wireStructs are the wire structs of package schema; TestWireStructsListed
// keeps the list complete.
var wireStructs = []schema.Wire{
	schema.RetryPolicy{},
	schema.Command{}, schema.Request{}, schema.Response{}, schema.PlanStep{}, schema.TraceEntry{}, schema.StepTiming{}, schema.Planned{}, schema.ExecRequest{}, schema.Cancel{},
	schema.CancelRequest{}, schema.PlannerAck{}, schema.ExecReply{}, schema.ExecResult{}, schema.ExecError{},
	&schema.Error{}, schema.Hello{}, schema.Load{}, schema.Heartbeat{}, schema.Goodbye{}, schema.Warning{}, schema.CancelAnswer{},
	schema.StatusRequest{}, schema.Status{}, schema.Durability{},
}

// TestWireTrees fills every field of every wire struct and checks that its
// Tree, which both codecs encode, has exactly the keys and values
// encoding/json writes from the struct's tags; and so for the zero value,
// where omitempty decides. A field added without its key fails here.
func TestWireTrees(t *testing.T) {
	for _, w := range wireStructs {
		typ := reflect.TypeOf(w)
		t.Run(typ.String(), func(t *testing.T) {
			for _, filled := range []bool{true, false} {
				p := reflect.New(reflect.Indirect(reflect.ValueOf(w)).Type())
				if filled {
					fill(p.Elem(), 2)
				}
				v := p.Interface()
				if typ.Kind() != reflect.Pointer {
					v = p.Elem().Interface()
				}
				want, err := viaJSON(v)
				require.NoError(t, err)
				got, err := Normalize(v)
				require.NoError(t, err)
				require.Equal(t, want, got, "filled: %v", filled)
				for _, c := range codecs {
					b, err := c.Encode(v)
					require.NoError(t, err)
					back, err := c.Decode(b)
					require.NoError(t, err)
					require.Equal(t, want, back, "%s, filled: %v", c.ContentType(), filled)
				}
			}
		})
	}
}

// fill sets every exported field that encoding/json writes to a value
// that is not empty: strings to their field's name, integers to 7,
// booleans to true, one element in slices and maps, structs and pointers
// filled in turn.
func fill(v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("s")
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Interface:
		v.Set(reflect.ValueOf("any"))
	case reflect.Pointer:
		if depth > 0 {
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem(), depth-1)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), depth)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, depth)
		m.SetMapIndex(reflect.ValueOf("k"), e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if f.IsExported() && f.Tag.Get("json") != "-" {
				fill(v.Field(i), depth)
				if f.Type.Kind() == reflect.String {
					v.Field(i).SetString(f.Name)
				}
			}
		}
	}
}

// TestWireStructsListed finds every struct of package schema with json
// tags and checks that it is in wireStructs, so a new wire struct cannot
// go without a Tree and its test.
func TestWireStructsListed(t *testing.T) {
	listed := map[string]bool{}
	for _, w := range wireStructs {
		listed[reflect.Indirect(reflect.ValueOf(w)).Type().Name()] = true
	}
	entries, err := os.ReadDir("../schema")
	require.NoError(t, err)
	found := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("../schema", e.Name()), nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, f := range st.Fields.List {
				if f.Tag != nil && strings.Contains(f.Tag.Value, `json:"`) {
					require.True(t, listed[ts.Name.Name], "schema.%s has json tags but is not in wireStructs", ts.Name.Name)
					found++
					break
				}
			}
			return true
		})
	}
	require.Equal(t, len(wireStructs), found)
}
