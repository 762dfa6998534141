package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// RawFunc is a function that takes its decoded arguments as they came: the
// value model of package codec. Use it for dynamic functions.
type RawFunc func(ctx context.Context, args []any, kwargs map[string]any) (any, error)

// FuncOption configures one registered function.
type FuncOption func(*funcOpts)

type funcOpts struct {
	locs       []string
	params     []string
	idempotent bool
	retryAfter time.Duration
	inline     bool
}

// WithLocs adds locs (resource tags) to the function, on top of the node's.
func WithLocs(locs ...string) FuncOption {
	return func(o *funcOpts) { o.locs = append(o.locs, locs...) }
}

// WithParams names the function's parameters (after the optional
// context.Context), in order, so that callers may pass them as kwargs.
// Without names a typed function takes positional arguments only, unless its
// only parameter is a struct (see Register).
func WithParams(names ...string) FuncOption {
	return func(o *funcOpts) { o.params = names }
}

// RetryAfter marks the function idempotent and says how long one attempt
// normally takes at most: a planner whose attempt on another node has not
// answered within d tries the next eligible node (at most twice), instead of
// waiting for the whole request's budget. The late attempt is cancelled.
func RetryAfter(d time.Duration) FuncOption {
	return func(o *funcOpts) { o.idempotent, o.retryAfter = true, d }
}

// Idempotent marks the function safe to run twice, so that a step whose node
// was lost mid-execution may be retried elsewhere.
func Idempotent() FuncOption { return func(o *funcOpts) { o.idempotent = true } }

// Inline says the function returns quickly and never blocks (no I/O, no
// locks held long, no sleeping): the node may then run it on the goroutine
// that reads its exec subscription, saving a goroutine hand-off per call.
// While an inline function runs, the node's other exec messages wait, so
// use it only for functions that take microseconds. Its context, deadline,
// panic recovery and run slot are as for any function.
func Inline() FuncOption { return func(o *funcOpts) { o.inline = true } }

// fn is one registered function.
type fn struct {
	name       string
	locs       []string // the function's own locs (without the node's)
	idempotent bool
	retryAfter time.Duration
	inline     bool
	call       RawFunc
}

// registry maps names to functions.
type registry struct {
	mu    sync.RWMutex
	funcs map[string]*fn
}

func (r *registry) get(name string) (*fn, bool) {
	r.mu.RLock()
	f, ok := r.funcs[name]
	r.mu.RUnlock()
	return f, ok
}

func (r *registry) put(f *fn) {
	r.mu.Lock()
	r.funcs[f.name] = f
	r.mu.Unlock()
}

func (r *registry) remove(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.funcs[name]
	delete(r.funcs, name)
	return ok
}

// funs returns each function's effective locs: nodeLocs plus its own.
func (r *registry) funs(nodeLocs []string) map[string][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string][]string, len(r.funcs))
	for name, f := range r.funcs {
		l := append(slices.Clone(nodeLocs), f.locs...)
		sort.Strings(l)
		out[name] = slices.Compact(l)
		if out[name] == nil {
			out[name] = []string{}
		}
	}
	return out
}

// idempotent returns the sorted names of the functions marked Idempotent.
func (r *registry) idempotent() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for name, f := range r.funcs {
		if f.idempotent {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// retryAfter returns the RetryAfter of the functions that have one, in ms.
func (r *registry) retryAfter() map[string]int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out map[string]int64
	for name, f := range r.funcs {
		if ms := f.retryAfter.Milliseconds(); ms > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[name] = ms
		}
	}
	return out
}

var (
	ctxType   = reflect.TypeFor[context.Context]()
	errorType = reflect.TypeFor[error]()
)

func invalidArg(format string, args ...any) *schema.Error {
	return schema.Errorf(schema.CodeInvalidArgument, format, args...)
}

// wrap turns a typed Go function into a RawFunc.
//
// Accepted forms: func([ctx context.Context,] params...) ([R,] [error]).
// Positional args decode into the parameters' types with codec.Assign. With
// WithParams the parameters also take kwargs by name; a parameter of pointer,
// interface, slice or map type may be left out (it gets nil). A function
// whose only parameter is a struct (or pointer to one) and that has no
// WithParams takes kwargs as the struct's fields by json tag, or one
// positional map. A variadic last parameter takes the remaining positional
// args.
func wrap(name string, f any, params []string) (RawFunc, error) {
	if raw, ok := f.(RawFunc); ok {
		return raw, nil
	}
	if raw, ok := f.(func(context.Context, []any, map[string]any) (any, error)); ok {
		return raw, nil
	}
	b, err := newBinding(name, f, params)
	if err != nil {
		return nil, err
	}
	return b.call, nil
}

// binding is a typed Go function prepared, once, for calls with values.
type binding struct {
	name       string
	fn         reflect.Value
	params     []string       // names from WithParams, or nil
	first      int            // 1 when the function takes a context first
	in         []reflect.Type // the parameters after the context
	variadic   bool
	structMode bool // one struct parameter, no WithParams: kwargs are its fields
	outErr     bool // the last result is an error
	outVal     bool // there is a result value
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
	b.in = make([]reflect.Type, nIn)
	for i := range b.in {
		b.in[i] = t.In(b.first + i)
	}
	b.structMode = params == nil && nIn == 1 && !b.variadic && isStruct(b.in[0])
	b.outErr = t.NumOut() > 0 && t.Out(t.NumOut()-1) == errorType
	b.outVal = t.NumOut() == 2 || (t.NumOut() == 1 && !b.outErr)
	return b, nil
}

// call is the RawFunc of the binding.
func (b *binding) call(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
	vals := make([]reflect.Value, 0, b.first+max(len(b.in), len(args)))
	if b.first == 1 {
		vals = append(vals, reflect.ValueOf(ctx))
	}
	var err error
	if b.structMode {
		vals, err = b.bindStruct(vals, args, kwargs)
	} else {
		vals, err = b.bindParams(vals, args, kwargs)
	}
	if err != nil {
		return nil, err
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

// paramName names parameter i in errors.
func (b *binding) paramName(i int) string {
	if b.params != nil {
		return b.params[i]
	}
	return fmt.Sprintf("args[%d]", i)
}

// bindStruct binds kwargs (or one positional map) to the struct parameter.
func (b *binding) bindStruct(vals []reflect.Value, args []any, kwargs map[string]any) ([]reflect.Value, error) {
	p := reflect.New(b.in[0])
	var src any
	switch {
	case len(args) == 1 && len(kwargs) == 0:
		src = args[0]
	case len(args) == 0:
		src = kwargs
		if err := checkFields(indirect(b.in[0]), kwargs); err != nil {
			return nil, err
		}
	default:
		return nil, invalidArg("%s takes keyword arguments or one map, got %d positional", b.name, len(args))
	}
	if src == nil {
		src = map[string]any{}
	}
	if err := codec.Assign(p.Interface(), src); err != nil {
		return nil, schema.Wrap(schema.CodeInvalidArgument, err, "%s", b.name)
	}
	return append(vals, p.Elem()), nil
}

// bindParams binds positional args and kwargs by name to the parameters,
// and the remaining positional args to a variadic last one.
func (b *binding) bindParams(vals []reflect.Value, args []any, kwargs map[string]any) ([]reflect.Value, error) {
	fixed := len(b.in)
	if b.variadic {
		fixed--
	}
	if len(args) > fixed && !b.variadic {
		return nil, invalidArg("%s takes %d arguments, got %d", b.name, fixed, len(args))
	}
	set, have, err := b.gather(fixed, args, kwargs)
	if err != nil {
		return nil, err
	}
	for i := 0; i < fixed; i++ {
		p := reflect.New(b.in[i])
		if !have[i] {
			if !nullable(b.in[i]) {
				return nil, &schema.Error{Code: schema.CodeInvalidArgument,
					Message: fmt.Sprintf("%s: missing argument %s", b.name, b.paramName(i)), Details: map[string]any{"param": b.paramName(i)}}
			}
		} else if err := codec.Assign(p.Interface(), set[i]); err != nil {
			e := schema.Wrap(schema.CodeInvalidArgument, err, "%s: %s", b.name, b.paramName(i))
			e.Details = map[string]any{"param": b.paramName(i)}
			return nil, e
		}
		vals = append(vals, p.Elem())
	}
	if b.variadic {
		et := b.in[len(b.in)-1].Elem()
		for i := fixed; i < len(args); i++ {
			p := reflect.New(et)
			if err := codec.Assign(p.Interface(), args[i]); err != nil {
				e := schema.Wrap(schema.CodeInvalidArgument, err, "%s: args[%d]", b.name, i)
				e.Details = map[string]any{"param": fmt.Sprintf("args[%d]", i)}
				return nil, e
			}
			vals = append(vals, p.Elem())
		}
	}
	return vals, nil
}

// gather places positional args, then kwargs by name, on the fixed
// parameters.
func (b *binding) gather(fixed int, args []any, kwargs map[string]any) (set []any, have []bool, err error) {
	set, have = make([]any, fixed), make([]bool, fixed)
	for i := 0; i < fixed && i < len(args); i++ {
		set[i], have[i] = args[i], true
	}
	for k, kv := range kwargs {
		i := slices.Index(b.params, k)
		if i < 0 || (b.variadic && i == len(b.in)-1) {
			return nil, nil, &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("%s has no parameter %q", b.name, k), Details: map[string]any{"param": k}}
		}
		if have[i] {
			return nil, nil, &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("%s: parameter %s given twice", b.name, k), Details: map[string]any{"param": k}}
		}
		set[i], have[i] = kv, true
	}
	return set, have, nil
}

func isStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct || (t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct)
}

func indirect(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return true
	}
	return false
}

// checkFields reports a kwarg that names no field of struct type t.
func checkFields(t reflect.Type, kwargs map[string]any) error {
	for k := range kwargs {
		if !hasField(t, k) {
			return &schema.Error{Code: schema.CodeInvalidArgument,
				Message: fmt.Sprintf("no parameter %q", k), Details: map[string]any{"param": k}}
		}
	}
	return nil
}

func hasField(t reflect.Type, name string) bool {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		n := tag
		for j := 0; j < len(tag); j++ {
			if tag[j] == ',' {
				n = tag[:j]
				break
			}
		}
		if n == "" {
			n = f.Name
		}
		if n == name || (f.Anonymous && isStruct(f.Type) && hasField(indirect(f.Type), name)) {
			return true
		}
	}
	return false
}

// callError turns a function's error into an *schema.Error: an *schema.Error
// it returned keeps its code, anything else is FUNCTION_ERROR with its text.
func callError(err error) *schema.Error {
	var e *schema.Error
	if errors.As(err, &e) {
		return e
	}
	return &schema.Error{Code: schema.CodeFunctionError, Message: err.Error()}
}
