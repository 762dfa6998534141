package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// Func adapts a typed function of one input to a RawFunc, to Register:
// signature mistakes are then compile errors. In is bound as a struct
// parameter is (see Register): from kwargs by the fields' json names (a
// key that names no field is INVALID_ARGUMENT), or from one positional
// argument, for any In. Out is the result.
//
//	n.Register("area", node.Func(func(ctx context.Context, r Rect) (float64, error) {
//		return r.W * r.H, nil
//	}))
//
// Register's options apply to it as to any function: with
// WithRetry(RetryPolicy{Attempts: 3, InitialBackoff: 50 * time.Millisecond})
// a planner tries a call that failed twice more.
func Func[In, Out any](f func(context.Context, In) (Out, error)) RawFunc {
	in := newParam(reflect.TypeFor[In]())
	plan := newInPlan(reflect.TypeFor[In](), in.fields != nil)
	return func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
		v, err := bindIn[In](plan, in, args, kwargs)
		if err != nil {
			return nil, err
		}
		return f(ctx, v)
	}
}

// bindIn binds the input of a Func: with its plan when the plan takes the
// arguments, else (or when plan is nil) with in.
func bindIn[In any](plan *inPlan, in param, args []any, kwargs map[string]any) (In, error) {
	var v In
	if plan != nil && plan.bind(unsafe.Pointer(&v), args, kwargs) {
		return v, nil
	}
	rv, err := in.bindOne("", args, kwargs)
	if err != nil {
		var zero In
		return zero, err
	}
	v, _ = rv.Interface().(In) // a nil interface is the zero In
	return v, nil
}

var (
	ctxType   = reflect.TypeFor[context.Context]()
	errorType = reflect.TypeFor[error]()
	bytesType = reflect.TypeFor[[]byte]()
)

// param is one parameter of a function, with its binders prepared once.
type param struct {
	t      reflect.Type
	bind   *codec.Binder
	fields *codec.Binder // for kwargs naming a struct's fields; nil unless t is a struct
}

func newParam(t reflect.Type) param {
	p := param{t: t, bind: codec.NewBinder(t)}
	if t != blobType && (t.Kind() == reflect.Struct || t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct) {
		p.fields = codec.NewBinder(t)
		p.fields.Strict = true
	}
	return p
}

// value binds v, naming the parameter in errors. null fits only a
// pointer, interface, slice or map (encoding/json would leave a zero
// value, which hides a caller's mistake).
func (p param) value(fun, name string, v any) (reflect.Value, error) {
	switch b, ok := v.([]byte); {
	case p.t == blobType:
		return blobValue(fun, name, v)
	case ok && p.t == bytesType && takeOwned(b):
		return reflect.ValueOf(b), nil // fetched for this call alone
	case ok && p.t == bytesType:
		// As the JSON path would give, without it: a copy, since the
		// function may change what it was given.
		return reflect.ValueOf(slices.Clone(b)), nil
	}
	if v == nil && !nullable(p.t) {
		return reflect.Value{}, badParam(fmt.Errorf("want %s, got null", p.t), fun, name)
	}
	rv, err := p.bind.Bind(v)
	if err != nil {
		return reflect.Value{}, badParam(err, fun, name)
	}
	return rv, nil
}

// bindOne binds the one input of a struct-mode function or of Func: kwargs
// as a struct's fields, or one positional argument.
func (p param) bindOne(fun string, args []any, kwargs map[string]any) (reflect.Value, error) {
	switch {
	case len(args) == 1 && len(kwargs) == 0:
		return p.value(fun, "args[0]", args[0])
	case len(args) > 0:
		return reflect.Value{}, invalidArg("%s takes keyword arguments or one argument, got %d positional", fun, len(args))
	case p.fields == nil:
		if len(kwargs) > 0 {
			return reflect.Value{}, noParam(fun, firstKey(kwargs))
		}
		return p.value(fun, "args[0]", nil)
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	rv, err := p.fields.Bind(kwargs)
	var ae *codec.AssignError
	if errors.Is(err, codec.ErrUnknownField) && errors.As(err, &ae) {
		return reflect.Value{}, noParam(fun, ae.Path)
	}
	if err != nil {
		return reflect.Value{}, badParam(err, fun, "")
	}
	return rv, nil
}

func firstKey(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return slices.Min(keys)
}

func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

func invalidArg(format string, args ...any) *schema.Error {
	return schema.Errorf(schema.CodeInvalidArgument, format, args...)
}

// badParam is INVALID_ARGUMENT for a value that does not fit a parameter:
// "add: b: want int, got string", with details.param.
func badParam(err error, fun, name string) *schema.Error {
	var e *schema.Error
	switch {
	case fun == "" && name == "":
		e = schema.Wrap(schema.CodeInvalidArgument, err, "")
	case name == "":
		e = schema.Wrap(schema.CodeInvalidArgument, err, "%s", fun)
	case fun == "":
		e = schema.Wrap(schema.CodeInvalidArgument, err, "%s", name)
	default:
		e = schema.Wrap(schema.CodeInvalidArgument, err, "%s: %s", fun, name)
	}
	if name != "" {
		e.Details = map[string]any{"param": name}
	}
	return e
}

func noParam(fun, key string) *schema.Error {
	msg := fmt.Sprintf("no parameter %q", key)
	if fun != "" {
		msg = fun + " has " + msg
	}
	return &schema.Error{Code: schema.CodeInvalidArgument, Message: msg, Details: map[string]any{"param": key}}
}

// wrap turns a typed Go function into a RawFunc.
//
// Accepted forms: func([ctx context.Context,] params...) ([R,] [error]).
// Positional args bind to the parameters' types with codec.Binder, as
// encoding/json decodes (see there); null fits only a pointer, interface,
// slice or map. With WithParams the parameters also take kwargs by name; a
// parameter of pointer, interface, slice or map type may be left out (it
// gets nil). A function whose only parameter is a struct (or pointer to
// one) and that has no WithParams takes kwargs as the struct's fields by
// json name, or one positional argument. A variadic last parameter takes
// the remaining positional args.
//
// required names parameters (of params) that may not be left out even when
// their type could take nil (see Required); a RawFunc takes none.
func wrap(name string, f any, params, required []string) (RawFunc, error) {
	call, _, err := wrapCtx(name, f, params, required)
	return call, err
}

// wrapCtx is wrap, and says whether the function reads a context: a
// RawFunc, or a typed function whose first parameter is one.
func wrapCtx(name string, f any, params, required []string) (_ RawFunc, readsCtx bool, _ error) {
	raw, isRaw := f.(RawFunc)
	if !isRaw {
		raw, isRaw = f.(func(context.Context, []any, map[string]any) (any, error))
	}
	if isRaw {
		if len(required) > 0 {
			return nil, false, fmt.Errorf("%w: %s: Required names parameters of a typed function, not of a RawFunc", ErrInvalidConfig, name)
		}
		return raw, true, nil
	}
	b, err := newBinding(name, f, params)
	if err != nil {
		return nil, false, err
	}
	if err := b.require(required); err != nil {
		return nil, false, err
	}
	return b.call, b.first == 1, nil
}

// binding is a typed Go function prepared, once, for calls with values.
type binding struct {
	name       string
	fn         reflect.Value
	params     []string // names from WithParams, or nil
	first      int      // 1 when the function takes a context first
	in         []param  // the parameters after the context
	variadic   bool
	required   []bool // by parameter: may not be left out (Required)
	structMode bool   // one struct parameter, no WithParams: kwargs are its fields
	outErr     bool   // the last result is an error
	outVal     bool   // there is a result value
	// direct is the function when it has one of the shapes that
	// callDirect calls without reflection; else nil.
	direct any
}

// isDirect says whether callDirect calls f.
func isDirect(f any) bool {
	switch f.(type) {
	case func(any) any, func(any) (any, error), func(context.Context, any) (any, error), func(...any) []any:
		return true
	}
	return false
}

func noValueOnError(v any, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

func newBinding(name string, f any, params []string) (*binding, error) {
	v := reflect.ValueOf(f)
	t := v.Type()
	if t.Kind() != reflect.Func {
		return nil, fmt.Errorf("%w: %s: want a function, got %s", ErrInvalidConfig, name, t)
	}
	b := &binding{name: name, fn: v, params: params, variadic: t.IsVariadic()}
	if t.NumIn() > 0 && t.In(0) == ctxType {
		b.first = 1
	}
	nIn := t.NumIn() - b.first
	switch {
	case t.NumOut() > 2:
		return nil, fmt.Errorf("%w: %s: returns more than (result, error)", ErrInvalidConfig, name)
	case t.NumOut() == 2 && t.Out(1) != errorType:
		return nil, fmt.Errorf("%w: %s: second result must be error", ErrInvalidConfig, name)
	case params != nil && len(params) != nIn:
		return nil, fmt.Errorf("%w: %s: %d parameter names for %d parameters", ErrInvalidConfig, name, len(params), nIn)
	}
	b.in = make([]param, nIn)
	for i := range b.in {
		pt := t.In(b.first + i)
		if b.variadic && i == nIn-1 {
			pt = pt.Elem()
		}
		b.in[i] = newParam(pt)
	}
	b.structMode = params == nil && nIn == 1 && !b.variadic && b.in[0].fields != nil
	b.outErr = t.NumOut() > 0 && t.Out(t.NumOut()-1) == errorType
	b.outVal = t.NumOut() == 2 || (t.NumOut() == 1 && !b.outErr)
	if !b.structMode {
		if isDirect(f) {
			b.direct = f
		}
	}
	return b, nil
}

// require marks the parameters named as required (see Required).
func (b *binding) require(names []string) error {
	for _, name := range names {
		i := slices.Index(b.params, name)
		if i < 0 || (b.variadic && i == len(b.in)-1) {
			return fmt.Errorf("%w: %s: Required(%q) names no fixed parameter of WithParams", ErrInvalidConfig, b.name, name)
		}
		if b.required == nil {
			b.required = make([]bool, len(b.in))
		}
		b.required[i] = true
	}
	return nil
}

// call is the RawFunc of the binding.
func (b *binding) call(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
	if b.direct != nil {
		return b.callDirect(ctx, args, kwargs)
	}
	vals := make([]reflect.Value, 0, b.first+max(len(b.in), len(args)))
	if b.first == 1 {
		vals = append(vals, reflect.ValueOf(ctx))
	}
	if b.structMode {
		v, err := b.in[0].bindOne(b.name, args, kwargs)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	} else {
		var err error
		if vals, err = b.bindParams(vals, args, kwargs); err != nil {
			return nil, err
		}
	}
	out := b.fn.Call(vals)
	if b.outErr {
		if e := out[len(out)-1]; !e.IsNil() {
			return nil, e.Interface().(error)
		}
	}
	if b.outVal {
		return out[0].Interface(), nil
	}
	return nil, nil
}

// callDirect binds and calls a function of isDirect's shapes, without
// reflection: each parameter is of type any, so a bound argument is the
// value itself. The results are those of the reflective call (no result
// value with a non-nil error).
func (b *binding) callDirect(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
	var buf [4]any
	vals, err := bindParamsAs(b, buf[:0], args, kwargs,
		func(_ param, _, _ string, v any) (any, error) { return v, nil },
		func(param) any { return nil })
	if err != nil {
		return nil, err
	}
	switch g := b.direct.(type) {
	case func(any) any:
		return g(vals[0]), nil
	case func(any) (any, error):
		return noValueOnError(g(vals[0]))
	case func(context.Context, any) (any, error):
		return noValueOnError(g(ctx, vals[0]))
	case func(...any) []any:
		rest := make([]any, len(vals)) // the function may keep it
		copy(rest, vals)
		return g(rest...), nil
	}
	panic("node: callDirect of a function isDirect refuses")
}

// paramName names parameter i in errors.
func (b *binding) paramName(i int) string {
	if b.params != nil && i < len(b.params) {
		return b.params[i]
	}
	return argName(i)
}

// argNames are the names of the first positional arguments, made once:
// a name is passed for every argument bound, not only for errors.
var argNames = func() []string {
	n := make([]string, 64)
	for i := range n {
		n[i] = fmt.Sprintf("args[%d]", i)
	}
	return n
}()

// argName names positional argument i, "args[i]".
func argName(i int) string {
	if i < len(argNames) {
		return argNames[i]
	}
	return fmt.Sprintf("args[%d]", i)
}

// bindParams binds positional args and kwargs by name to the parameters,
// and the remaining positional args to a variadic last one.
func (b *binding) bindParams(vals []reflect.Value, args []any, kwargs map[string]any) ([]reflect.Value, error) {
	return bindParamsAs(b, vals, args, kwargs, param.value, func(p param) reflect.Value { return reflect.Zero(p.t) })
}

// bindParamsAs is bindParams with the conversion of a value to a
// parameter (bind) and the value of one left out (zero) given: as
// reflect.Values for a reflective call, or as the values themselves for a
// direct one.
func bindParamsAs[V any](b *binding, vals []V, args []any, kwargs map[string]any,
	bind func(p param, fun, name string, v any) (V, error), zero func(p param) V) ([]V, error) {
	fixed := len(b.in)
	if b.variadic {
		fixed--
	}
	if len(args) > fixed && !b.variadic {
		return nil, invalidArg("%s takes %d arguments, got %d", b.name, fixed, len(args))
	}
	var setBuf [4]any
	var haveBuf [4]bool
	set, have := setBuf[:0], haveBuf[:0]
	if fixed > len(setBuf) {
		set, have = make([]any, 0, fixed), make([]bool, 0, fixed)
	}
	set, have = set[:fixed], have[:fixed]
	if err := b.gather(set, have, args, kwargs); err != nil {
		return nil, err
	}
	for i := 0; i < fixed; i++ {
		if !have[i] {
			if !nullable(b.in[i].t) || (b.required != nil && b.required[i]) {
				return nil, &schema.Error{Code: schema.CodeInvalidArgument,
					Message: fmt.Sprintf("%s: missing argument %s", b.name, b.paramName(i)), Details: map[string]any{"param": b.paramName(i)}}
			}
			vals = append(vals, zero(b.in[i]))
			continue
		}
		v, err := bind(b.in[i], b.name, b.paramName(i), set[i])
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	for i := fixed; i < len(args); i++ {
		v, err := bind(b.in[fixed], b.name, argName(i), args[i])
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}

// gather places positional args, then kwargs by name, on the fixed
// parameters: in set, with have[i] true for each one given.
func (b *binding) gather(set []any, have []bool, args []any, kwargs map[string]any) error {
	for i := 0; i < len(set) && i < len(args); i++ {
		set[i], have[i] = args[i], true
	}
	for k, kv := range kwargs {
		i := slices.Index(b.params, k)
		if i < 0 || (b.variadic && i == len(b.in)-1) {
			return noParam(b.name, k)
		}
		if have[i] {
			return &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("%s: parameter %s given twice", b.name, k), Details: map[string]any{"param": k}}
		}
		set[i], have[i] = kv, true
	}
	return nil
}
