package node

import (
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// An inPlan fills the input of a Func straight from the value tree, without
// JSON text, for the shapes most inputs have: structs with json tags, bool,
// integers, floats and strings, pointers and slices of those, nested
// structs, any and map[string]any. It is compiled once per type.
//
// It does only what gives the very value that the JSON path of param
// (codec.Binder) gives, and refuses everything else, leaving it to that
// path: a refusal is never an error, so every error and every unusual
// value stays the JSON path's. It refuses, among others: keys that name no
// field or that are not ASCII, two keys that fold to one field, invalid
// UTF-8, NaN and ±Inf, a float into an integer, an integer out of range,
// and large integers into a float. Types it does not know (embedded
// fields, ",string", Unmarshalers, other maps, []byte, arrays, interfaces
// with methods) are refused where a value meets them.
type inPlan struct {
	top      fill // fills the input from args[0]
	fields   bool // the input is a struct or a pointer to one: kwargs are its fields
	nullable bool // args[0] may be null (the input stays nil)
}

// fill stores v, which is not nil, into the value of its type at p, or
// says false. It may have written part of the value when it says false.
type fill func(p unsafe.Pointer, v any) bool

// newInPlan returns the plan of t, or nil when t has none. fields says
// whether kwargs bind as t's fields (see param).
func newInPlan(t reflect.Type, fields bool) *inPlan {
	c := planCompiler{structs: map[reflect.Type]*structPlan{}}
	top := directFill(t)
	if top == nil {
		top = c.fillOf(t)
	}
	if top == nil {
		return nil
	}
	return &inPlan{top: top, fields: fields, nullable: nullable(t)}
}

// bind fills *dst, the zero input, from a call's arguments as
// param.bindOne would, or says false.
func (pl *inPlan) bind(dst unsafe.Pointer, args []any, kwargs map[string]any) bool {
	switch {
	case len(args) == 1 && len(kwargs) == 0:
		if args[0] == nil {
			return pl.nullable
		}
		return pl.top(dst, args[0])
	case len(args) > 0 || !pl.fields:
		return false
	}
	return pl.top(dst, kwargs) // a nil kwargs is an empty object
}

// directFill is the fill of the types that take the tree as it is, at the
// top only (see codec.Binder); nil for other types.
func directFill(t reflect.Type) fill {
	switch t {
	case anyType:
		return func(p unsafe.Pointer, v any) bool { *(*any)(p) = v; return true }
	case anySliceType:
		return func(p unsafe.Pointer, v any) bool {
			l, ok := v.([]any)
			*(*[]any)(p) = l
			return ok
		}
	case anyMapType:
		return func(p unsafe.Pointer, v any) bool {
			m, ok := v.(map[string]any)
			*(*map[string]any)(p) = m
			return ok
		}
	case blobType:
		return func(p unsafe.Pointer, v any) bool {
			b, ok := toBlob(v)
			*(**Blob)(p) = b
			return ok
		}
	}
	return nil
}

var (
	anyType         = reflect.TypeFor[any]()
	anySliceType    = reflect.TypeFor[[]any]()
	anyMapType      = reflect.TypeFor[map[string]any]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// planCompiler compiles fills, each struct once (so recursive types end).
type planCompiler struct {
	structs map[reflect.Type]*structPlan
}

// fillOf returns the fill of t as a value inside the input, or nil.
func (c *planCompiler) fillOf(t reflect.Type) fill {
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch k := t.Kind(); {
	case k == reflect.Bool:
		return fillBool
	case k == reflect.String:
		return fillString
	case k >= reflect.Int && k <= reflect.Int64:
		return intFill(t.Size())
	case k >= reflect.Uint && k <= reflect.Uint64:
		return uintFill(t.Size())
	case k == reflect.Float32:
		return fillFloat32
	case k == reflect.Float64:
		return fillFloat64
	case k == reflect.Interface && t.NumMethod() == 0:
		return fillAny
	case t == anyMapType:
		return fillAnyMap
	case k == reflect.Pointer:
		return c.pointerFill(t)
	case k == reflect.Slice && t.Elem().Kind() != reflect.Uint8: // []byte is base64
		return c.sliceFill(t)
	case k == reflect.Struct:
		if s := c.structOf(t); s != nil {
			return s.fill
		}
	}
	return nil
}

func (c *planCompiler) pointerFill(t reflect.Type) fill {
	elem := c.fillOf(t.Elem())
	if elem == nil {
		return nil
	}
	et := t.Elem()
	return func(p unsafe.Pointer, v any) bool {
		q := reflect.New(et).UnsafePointer()
		*(*unsafe.Pointer)(p) = q
		return elem(q, v)
	}
}

func (c *planCompiler) sliceFill(t reflect.Type) fill {
	elem := c.fillOf(t.Elem())
	if elem == nil {
		return nil
	}
	size := t.Elem().Size()
	return func(p unsafe.Pointer, v any) bool {
		l, ok := v.([]any)
		if !ok {
			return false
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		base := s.UnsafePointer()
		for i, x := range l {
			if x != nil && !elem(unsafe.Add(base, uintptr(i)*size), x) {
				return false
			}
		}
		reflect.NewAt(t, p).Elem().Set(s)
		return true
	}
}

// structPlan fills a struct from an object: its fields by json name.
type structPlan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	name string
	off  uintptr
	fill fill // nil: a type or tag the plan leaves to JSON
}

// structOf returns the plan of struct type t, or nil when t has fields
// whose naming is not plain: embedded, non-ASCII or unusual names, names
// that fold together, or more than 64 fields.
func (c *planCompiler) structOf(t reflect.Type) *structPlan {
	if s, ok := c.structs[t]; ok {
		return s
	}
	s := &structPlan{}
	var types []reflect.Type // by field: its type, or nil when its tag's options are not plain
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil
		}
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		if !plainName(name) || s.index(name) >= 0 {
			return nil
		}
		s.fields = append(s.fields, fieldPlan{name: name, off: f.Offset})
		ft := f.Type
		if !plainOpts(opts) {
			ft = nil
		}
		types = append(types, ft)
	}
	if len(s.fields) > 64 {
		return nil
	}
	c.structs[t] = s // before the fields' types, which may name t
	for i, ft := range types {
		if ft != nil {
			s.fields[i].fill = c.fillOf(ft)
		}
	}
	return s
}

// plainName says whether a json name is of ASCII letters, digits, '_',
// '-' and '.', which encoding/json takes as they are.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-', b == '.':
		default:
			return false
		}
	}
	return name != ""
}

// plainOpts says whether a tag's options change nothing in decoding.
func plainOpts(opts string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o != "omitempty" && o != "omitzero" {
			return false
		}
	}
	return true
}

// index returns the field that key k names, as encoding/json finds it
// (exact, else case-insensitive), or -1. Keys are ASCII (see fill).
func (s *structPlan) index(k string) int {
	for i := range s.fields {
		if s.fields[i].name == k {
			return i
		}
	}
	for i := range s.fields {
		if strings.EqualFold(s.fields[i].name, k) {
			return i
		}
	}
	return -1
}

func (s *structPlan) fill(p unsafe.Pointer, v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	var seen uint64
	for k, x := range m {
		if !ascii(k) {
			return false
		}
		i := s.index(k)
		if i < 0 || seen&(1<<i) != 0 || s.fields[i].fill == nil {
			return false
		}
		seen |= 1 << i
		if x != nil && !s.fields[i].fill(unsafe.Add(p, s.fields[i].off), x) {
			return false
		}
	}
	return true
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func fillBool(p unsafe.Pointer, v any) bool {
	b, ok := v.(bool)
	*(*bool)(p) = b
	return ok
}

func fillString(p unsafe.Pointer, v any) bool {
	s, ok := v.(string)
	*(*string)(p) = s
	return ok && utf8.ValidString(s)
}

// intFill is the fill of a signed integer of size bytes: from an integer
// in its range.
func intFill(size uintptr) fill {
	return func(p unsafe.Pointer, v any) bool {
		n, ok := v.(int64)
		if !ok {
			return false
		}
		switch size {
		case 1:
			*(*int8)(p) = int8(n)
			return n == int64(int8(n))
		case 2:
			*(*int16)(p) = int16(n)
			return n == int64(int16(n))
		case 4:
			*(*int32)(p) = int32(n)
			return n == int64(int32(n))
		}
		*(*int64)(p) = n
		return true
	}
}

// uintFill is the fill of an unsigned integer of size bytes.
func uintFill(size uintptr) fill {
	return func(p unsafe.Pointer, v any) bool {
		var n uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return false
			}
			n = uint64(x)
		case uint64:
			n = x
		default:
			return false
		}
		switch size {
		case 1:
			*(*uint8)(p) = uint8(n)
			return n <= math.MaxUint8
		case 2:
			*(*uint16)(p) = uint16(n)
			return n <= math.MaxUint16
		case 4:
			*(*uint32)(p) = uint32(n)
			return n <= math.MaxUint32
		}
		*(*uint64)(p) = n
		return true
	}
}

// maxExact64 and maxExact32 bound the integers a float64 and a float32
// hold exactly: larger ones are left to JSON's rounding.
const (
	maxExact64 = 1 << 53
	maxExact32 = 1 << 24
)

func fillFloat64(p unsafe.Pointer, v any) bool {
	switch x := v.(type) {
	case float64:
		*(*float64)(p) = x
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	case int64:
		*(*float64)(p) = float64(x)
		return -maxExact64 <= x && x <= maxExact64
	}
	return false
}

// fillFloat32 takes a float64 only when a float32 holds it exactly: then
// its shortest text parses to the same float32.
func fillFloat32(p unsafe.Pointer, v any) bool {
	switch x := v.(type) {
	case float64:
		*(*float32)(p) = float32(x)
		return float64(float32(x)) == x && !math.IsInf(x, 0) // false for NaN
	case int64:
		*(*float32)(p) = float32(x)
		return -maxExact32 <= x && x <= maxExact32
	}
	return false
}

func fillAny(p unsafe.Pointer, v any) bool {
	x, ok := jsonAny(v)
	*(*any)(p) = x
	return ok
}

func fillAnyMap(p unsafe.Pointer, v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	x, ok := jsonAny(m)
	*(*map[string]any)(p), _ = x.(map[string]any)
	return ok
}

// jsonAny returns v as encoding/json decodes its JSON text into an any:
// numbers become float64, lists and maps are copied. ok is false for what
// that would change otherwise or refuse (invalid UTF-8, NaN, binary, large
// integers).
func jsonAny(v any) (any, bool) {
	switch x := v.(type) {
	case nil, bool:
		return x, true
	case string:
		return x, utf8.ValidString(x)
	case int64:
		return float64(x), -maxExact64 <= x && x <= maxExact64
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var ok bool
			if out[i], ok = jsonAny(e); !ok {
				return nil, false
			}
		}
		return out, true
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, ok := jsonAny(e)
			if !ok || !utf8.ValidString(k) {
				return nil, false
			}
			out[k] = c
		}
		return out, true
	}
	return nil, false
}
