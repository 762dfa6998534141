package codec

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/mpreg/mpreg/schema"
)

// A Binder converts value trees into values of one Go type as
// encoding/json decodes the tree's JSON text into it (json tags, case-
// insensitive keys, embedding, ",string", Unmarshalers, null leaving a
// value as it is). It is prepared once per type and safe for concurrent
// use. Where a tree says more than JSON text:
//
//   - any, []any and map[string]any get the tree as it is (integers stay
//     int64, binary []byte); an any inside other types gets encoding/json's
//     float64.
//   - A number with an integral value fits an integer type however it was
//     written (2.0, 1e2): the tree cannot tell. A fraction never fits.
//   - Binary fits []byte, and string as its base64 text (JSON's form);
//     NaN and ±Inf reach a float64 parameter, nothing nested.
//   - Of two keys that differ only in case, which one a field takes is not
//     defined (a map keeps no order); UnmarshalJSON sees compact JSON.
type Binder struct {
	// Strict makes a key that names no field an error wrapping
	// ErrUnknownField (set it before the Binder is used).
	Strict bool

	t      reflect.Type
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

var (
	anyType         = reflect.TypeFor[any]()
	anySlice        = reflect.TypeFor[[]any]()
	anyMap          = reflect.TypeFor[map[string]any]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// fast binds what needs no JSON text: the tree itself for any, []any and
// map[string]any, a scalar into its own kind (NaN and ±Inf too), an int64
// into a signed integer it fits. ok is false when JSON must decide.
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

// ErrUnknownField is wrapped by the error of a Strict Binder for a key
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
	if b.Strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(p.Interface()); err != nil {
		return reflect.Value{}, bindError(b.t, v, err)
	}
	return p.Elem(), nil
}

// Bind converts the tree v into a T, with the Binder of T.
func Bind[T any](v any) (T, error) {
	var out T
	rv, err := NewBinder(reflect.TypeFor[T]()).Bind(v)
	if err == nil && rv.IsValid() && rv.CanInterface() {
		out, _ = rv.Interface().(T) // a nil interface stays the zero T
	}
	return out, err
}

// AssignError is the error of a Binder: the value at Path (encoding/json's
// Field, "" at the top) does not fit the Go type Want; Got is its kind
// ("number 1.5", "list"). Msg, when set, replaces "want <Want>, got <Got>".
// It reads "items.qty: want int, got string", for a parameter name before.
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
