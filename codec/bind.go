package codec

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/mpreg/mpreg/schema"
)

// A Binder converts value trees into values of one Go type, the way
// encoding/json decodes the tree's JSON into that type: json tags, case-
// insensitive keys, embedding, ",string", Unmarshalers, and null leaving a
// value as it is. It is prepared once per type (a function's parameter) and
// safe for concurrent use.
//
// Where the value tree says more than JSON text, the rules are:
//
//   - A parameter of type any, []any or map[string]any gets the tree as it
//     is: integers stay int64, binary stays []byte. Inside other types an
//     any gets what encoding/json gives it (float64 for numbers).
//   - A number with an integral value fits an integer type however it was
//     written (2.0 from Python, 1e2): the tree cannot tell how the caller
//     spelled it, and a float with a fractional part still does not fit.
//   - Binary fits []byte (and string, as its base64 text, which is what
//     JSON carries it as); NaN and ±Inf, which MessagePack carries, reach a
//     float64 parameter but nothing nested.
//   - A map's keys have no order, so of two keys that differ only in case
//     which one a struct field takes is not defined; an UnmarshalJSON
//     method sees the value as compact JSON with sorted keys.
type Binder struct {
	t      reflect.Type
	strict bool // a key that names no field is an error
	direct bool // t is any, []any or map[string]any: the tree as it is
	scalar bool // t is of a bool, number or string kind, without unmarshal methods
}

// NewBinder returns the Binder of t. Unknown keys of an object are ignored.
func NewBinder(t reflect.Type) *Binder {
	pt := reflect.PointerTo(t)
	k := t.Kind()
	return &Binder{
		t:      t,
		direct: t == anyType || t == anySlice || t == anyMap,
		scalar: (k == reflect.Bool || k == reflect.String || k >= reflect.Int && k <= reflect.Float64) &&
			!pt.Implements(jsonUnmarshaler) && !pt.Implements(textUnmarshaler),
	}
}

// NewStrictBinder returns a Binder of t for which a key that names no
// field is an error wrapping ErrUnknownField.
func NewStrictBinder(t reflect.Type) *Binder {
	b := NewBinder(t)
	b.strict = true
	return b
}

var (
	anyType         = reflect.TypeFor[any]()
	anySlice        = reflect.TypeFor[[]any]()
	anyMap          = reflect.TypeFor[map[string]any]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// fast binds without JSON text what needs none: the tree itself for
// any, []any and map[string]any, a scalar into its own kind (NaN and ±Inf
// into float64 too), an int64 into a signed integer it fits. ok is false
// when the JSON path must decide.
func (b *Binder) fast(v any) (reflect.Value, bool) {
	x := reflect.ValueOf(v)
	switch {
	case b.direct && v == nil:
		return reflect.Zero(b.t), true
	case b.direct:
		return x, x.Type().AssignableTo(b.t)
	case !b.scalar || v == nil:
		return x, false
	case x.Kind() == b.t.Kind():
		return x.Convert(b.t), true
	}
	rv := reflect.New(b.t).Elem()
	n, ok := v.(int64)
	if ok && rv.CanInt() && !rv.OverflowInt(n) {
		rv.SetInt(n)
		return rv, true
	}
	return rv, false
}

// ErrUnknownField is wrapped by the error of a strict Binder for a key
// that names no field; the AssignError's Path is the key.
var ErrUnknownField = errors.New("unknown field")

// Bind converts the tree v into a value of the Binder's type. Errors are
// *AssignError.
func (b *Binder) Bind(v any) (reflect.Value, error) {
	if rv, ok := b.fast(v); ok {
		return rv, nil
	}
	text, err := json.Marshal(v) // integral floats as integers
	if err != nil {
		return reflect.Value{}, bindError(b.t, v, err)
	}
	p := reflect.New(b.t)
	dec := json.NewDecoder(bytes.NewReader(text))
	if b.strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(p.Interface()); err != nil {
		return reflect.Value{}, bindError(b.t, v, err)
	}
	return p.Elem(), nil
}

// Assign binds the tree v into the value dst points to, with the Binder of
// its type (see Binder); dst must be a non-nil pointer.
func Assign(dst any, v any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &AssignError{Msg: fmt.Sprintf("codec: Assign needs a non-nil pointer, got %T", dst)}
	}
	out, err := NewBinder(rv.Type().Elem()).Bind(v)
	if err == nil {
		rv.Elem().Set(out)
	}
	return err
}

// AssignError is the error of Bind and Assign: the value at Path does not
// fit the Go type Want. Path is empty for the top value, else the keys on
// the way, joined by dots (encoding/json's Field). Got is the kind of the
// value ("string", "number 1.5", "list", "map"). Msg, when set, replaces
// "want <Want>, got <Got>". Error reads "items.qty: want int, got string",
// so that a caller can prefix a parameter name.
type AssignError struct {
	Path string
	Want string
	Got  string
	Msg  string

	err error
}

// Error implements error.
func (e *AssignError) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = "want " + e.Want + ", got " + e.Got
	}
	if e.Path != "" {
		return e.Path + ": " + msg
	}
	return msg
}

// Unwrap returns the cause: ErrUnknownField, or the error of a method
// that refused the value.
func (e *AssignError) Unwrap() error { return e.err }

// bindError turns an error of encoding/json into an AssignError.
func bindError(t reflect.Type, v any, err error) *AssignError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		got := te.Value
		switch got {
		case "array":
			got = "list"
		case "object":
			got = "map"
		}
		return &AssignError{Path: te.Field, Want: te.Type.String(), Got: got, err: err}
	}
	if key, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		return &AssignError{Path: strings.TrimSuffix(key, `"`), Msg: "unknown field", err: ErrUnknownField}
	}
	e := &AssignError{Want: t.String(), Got: schema.KindOf(v), err: err}
	e.Msg = "want " + e.Want + ", got " + e.Got + ": " + strings.TrimPrefix(err.Error(), "json: ")
	return e
}
