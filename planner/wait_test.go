package planner_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/planner"
	"github.com/mpreg/mpreg/schema"
)

// lateRouter has no route until open is closed.
type lateRouter struct{ open chan struct{} }

func (r lateRouter) Route(context.Context, string, []string, []string) (string, bool) {
	select {
	case <-r.open:
		return "n1", true
	default:
		return "", false
	}
}

// watcher is a Runner.RouteWait.Watch the test fires by hand.
type watcher struct {
	mu      sync.Mutex
	watches map[int]func()
	next    int
	total   int // Watch calls
}

func newWatcher() *watcher { return &watcher{watches: map[int]func(){}} }

func (w *watcher) Watch(_ string, _ []string, wake func()) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := w.next
	w.next++
	w.total++
	w.watches[id] = wake
	return func() {
		w.mu.Lock()
		delete(w.watches, id)
		w.mu.Unlock()
	}
}

// fire wakes every watch.
func (w *watcher) fire() {
	w.mu.Lock()
	var wakes []func()
	for _, f := range w.watches {
		wakes = append(wakes, f)
	}
	w.mu.Unlock()
	for _, f := range wakes {
		f()
	}
}

// Live returns the watches not stopped; Total the Watch calls.
func (w *watcher) Live() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watches)
}

func (w *watcher) Total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// fanOut is a request of n steps of fun, each waiting up to waitMS for a
// route.
func fanOut(t testing.TB, n int, fun string, waitMS int) *planner.Plan {
	var b strings.Builder
	fmt.Fprintf(&b, `{"route_wait_ms": %d, "cmds": [`, waitMS)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"name": "s%d", "fun": %q, "args": [%d]}`, i, fun, i)
	}
	b.WriteString("]}")
	return mustPlan(t, b.String())
}

// A step waits up to route_wait_ms for a route, and runs when one
// appears: told by Runner.RouteWait.Watch, or polling without it; alone
// (on the request's goroutine) or with others (parked by the run).
func TestRunRouteWait(t *testing.T) {
	for _, withWatch := range []bool{true, false} {
		for _, steps := range []int{1, 3} {
			name := fmt.Sprintf("watch=%v steps=%d", withWatch, steps)
			open := make(chan struct{})
			w := newWatcher()
			r := &planner.Runner{Router: lateRouter{open}, Executor: newFuncs(nil)}
			if withWatch {
				r.RouteWait.Watch = w.Watch
			}
			p := fanOut(t, steps, "echo", 10000)
			require.Equal(t, 10*time.Second, p.RouteWait)
			res := runAsync(context.Background(), r, p)
			testwait.For(t, name+": the steps to wait", func() error {
				if r.Waiting() != int64(steps) {
					return fmt.Errorf("%d waiting", r.Waiting())
				}
				return nil
			})
			close(open)
			w.fire()
			got := testwaitRecv(t, res)
			require.Nil(t, got.err, name)
			assert.Len(t, got.results, steps, name)
			assert.Equal(t, int64(0), got.results["s0"], name)
			assert.Zero(t, r.Waiting(), name)
			assert.Zero(t, w.Live(), name+": the watches end with the request")
		}
	}
}

// After route_wait_ms without a route, NO_ROUTE says how long the step
// waited; without route_wait_ms, no wait.
func TestRouteWaitNoRoute(t *testing.T) {
	for _, steps := range []int{1, 3} {
		r := &planner.Runner{Router: lateRouter{make(chan struct{})}, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: newWatcher().Watch}}
		start := time.Now()
		_, err := runOf(context.Background(), r, fanOut(t, steps, "echo", 50))
		took := time.Since(start)
		require.NotNil(t, err)
		assert.Equal(t, schema.CodeNoRoute, err.Code)
		assert.GreaterOrEqual(t, took, 50*time.Millisecond)
		d := details(t, err)
		assert.EqualValues(t, 50, d["route_wait_ms"])
		waited, _ := d["waited_ms"].(int64)
		assert.GreaterOrEqual(t, waited, int64(50))
		assert.Less(t, waited, int64(5000))
		assert.Contains(t, err.Message, fmt.Sprintf("(waited %d ms)", waited))
		assert.Zero(t, r.Waiting())

		_, err = runOf(context.Background(), r, fanOut(t, steps, "echo", 0))
		require.NotNil(t, err)
		assert.Equal(t, schema.CodeNoRoute, err.Code)
		assert.NotContains(t, err.Message, "waited")
		assert.NotContains(t, details(t, err), "waited_ms")
	}
}

// A wait cut short by the request's budget is TIMEOUT (not NO_ROUTE), and
// says how long the step really waited; a cancel is CANCELLED.
func TestRouteWaitBudget(t *testing.T) {
	for _, steps := range []int{1, 3} {
		r := &planner.Runner{Router: lateRouter{make(chan struct{})}, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: newWatcher().Watch}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := runOf(ctx, r, fanOut(t, steps, "echo", 86_400_000))
		cancel()
		require.NotNil(t, err)
		require.Equal(t, schema.CodeTimeout, err.Code, "%v", err)
		assert.Equal(t, "s0", err.Step[:2])
		d := details(t, err)
		assert.EqualValues(t, 86_400_000, d["route_wait_ms"])
		waited, _ := d["waited_ms"].(int64)
		assert.GreaterOrEqual(t, waited, int64(150))
		assert.Less(t, waited, int64(5000))
		assert.Contains(t, err.Message, fmt.Sprintf("waited %d ms", waited))
		assert.NotContains(t, err.Message, "waited 86400000")
		assert.Zero(t, r.Waiting())

		ctx, cancel = context.WithCancel(context.Background())
		res := runAsync(ctx, r, fanOut(t, steps, "echo", 86_400_000))
		testwait.For(t, "the steps to wait", func() error {
			if r.Waiting() != int64(steps) {
				return fmt.Errorf("%d waiting", r.Waiting())
			}
			return nil
		})
		cancel()
		got := testwaitRecv(t, res)
		require.NotNil(t, got.err)
		assert.Equal(t, schema.CodeCancelled, got.err.Code)
		assert.Contains(t, details(t, got.err), "waited_ms")
	}
}

// Steps waiting for a route cost no goroutine each, one watch per
// function and locs, and a wake lets them all run.
func TestRouteWaitParks(t *testing.T) {
	const steps = 500
	open := make(chan struct{})
	w := newWatcher()
	var routes atomic.Int64
	router := planner.RouterFunc(func(ctx context.Context, fun string, locs, exclude []string) (string, bool) {
		routes.Add(1)
		return lateRouter{open}.Route(ctx, fun, locs, exclude)
	})
	r := &planner.Runner{Router: router, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: w.Watch}}
	before := runtime.NumGoroutine()
	res := runAsync(context.Background(), r, fanOut(t, steps, "echo", 60_000))
	testwait.For(t, "the steps to wait", func() error {
		if r.Waiting() != steps {
			return fmt.Errorf("%d waiting", r.Waiting())
		}
		return nil
	})
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 3, "goroutines while %d steps wait", steps)
	assert.Equal(t, 1, w.Live(), "one watch for the request's one function")
	assert.LessOrEqual(t, routes.Load(), int64(4), "only the first step looked for a route")

	w.fire() // no route yet: one step looks again, the others stay
	testwait.For(t, "the wake to be taken", func() error {
		if r.Wakes() != 1 {
			return fmt.Errorf("%d wakes", r.Wakes())
		}
		return nil
	})
	close(open)
	w.fire()
	got := testwaitRecv(t, res)
	require.Nil(t, got.err)
	assert.Len(t, got.results, steps)
	assert.Zero(t, r.Waiting())
	assert.Zero(t, w.Live())
	assert.Equal(t, 1, w.Total())
}

// waitFor waits until r counts n steps waiting for a route.
func waitFor(t *testing.T, r *planner.Runner, n int64) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d steps to wait", n), func() error {
		if got := r.Waiting(); got != n {
			return fmt.Errorf("%d waiting", got)
		}
		return nil
	})
}

// RouteWait.Max bounds the steps waiting at once: past it a request fails
// with OVERLOADED (details.limit max_waiting), gives back its places, and
// the others wait on.
func TestMaxWaiting(t *testing.T) {
	open := make(chan struct{})
	w := newWatcher()
	r := &planner.Runner{Router: lateRouter{open}, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: w.Watch, Max: 10}}
	first := runAsync(context.Background(), r, fanOut(t, 8, "echo", 60_000))
	waitFor(t, r, 8)
	one := runAsync(context.Background(), r, fanOut(t, 1, "echo", 60_000))
	waitFor(t, r, 9)

	for _, steps := range []int{2, 5} {
		_, err := runOf(context.Background(), r, fanOut(t, steps, "echo", 60_000))
		require.NotNil(t, err, "steps=%d", steps)
		assert.Equal(t, schema.CodeOverloaded, err.Code)
		assert.Equal(t, "max_waiting", details(t, err)["limit"])
		assert.EqualValues(t, 10, details(t, err)["max"])
		assert.Equal(t, int64(9), r.Waiting(), "the refused request gave its places back")
	}
	last := runAsync(context.Background(), r, fanOut(t, 1, "echo", 60_000))
	waitFor(t, r, 10)
	_, err := runOf(context.Background(), r, fanOut(t, 1, "echo", 60_000))
	require.NotNil(t, err)
	assert.Equal(t, schema.CodeOverloaded, err.Code, "the one-step path is bound too")
	assert.Equal(t, "max_waiting", details(t, err)["limit"])

	close(open)
	w.fire()
	for _, res := range []<-chan runResult{first, one, last} {
		require.Nil(t, testwaitRecv(t, res).err)
	}
	assert.Zero(t, r.Waiting())
}

// Waiting steps hold Memory: a request whose steps find none left fails
// with OVERLOADED (max_planning_bytes), and gives back what it held.
func TestRouteWaitMemory(t *testing.T) {
	for _, steps := range []int{5, 1} {
		mem := &budget{cap: 3 * planner.WaitingStepBytes}
		if steps == 1 {
			mem.cap = planner.WaitingStepBytes - 1
		}
		r := &planner.Runner{Router: lateRouter{make(chan struct{})}, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: newWatcher().Watch}, Memory: mem}
		_, err := runOf(context.Background(), r, fanOut(t, steps, "echo", 60_000))
		require.NotNil(t, err)
		assert.Equal(t, schema.CodeOverloaded, err.Code)
		assert.Equal(t, "max_planning_bytes", details(t, err)["limit"])
		assert.Zero(t, mem.held)
		assert.Zero(t, r.Waiting())
	}
}

// funRouter routes the functions opened so far, and has a watch per
// function.
type funRouter struct {
	mu      sync.Mutex
	open    map[string]bool
	watches map[string]map[int]func()
	next    int
}

func newFunRouter() *funRouter {
	return &funRouter{open: map[string]bool{}, watches: map[string]map[int]func(){}}
}

func (r *funRouter) Route(_ context.Context, fun string, _, _ []string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "n1", r.open[fun]
}

func (r *funRouter) Watch(fun string, _ []string, wake func()) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watches[fun] == nil {
		r.watches[fun] = map[int]func(){}
	}
	id := r.next
	r.next++
	r.watches[fun][id] = wake
	return func() {
		r.mu.Lock()
		delete(r.watches[fun], id)
		r.mu.Unlock()
	}
}

// wake calls the watches of fun, as a table does after a change.
func (r *funRouter) wake(fun string) {
	r.mu.Lock()
	var wakes []func()
	for _, f := range r.watches[fun] {
		wakes = append(wakes, f)
	}
	r.mu.Unlock()
	for _, f := range wakes {
		f()
	}
}

// openFun makes fun routable and wakes its watches.
func (r *funRouter) openFun(fun string) {
	r.mu.Lock()
	r.open[fun] = true
	r.mu.Unlock()
	r.wake(fun)
}

// Requests whose steps wait for several functions, some depending on
// others, while the functions appear one by one among wakes that change
// nothing, all finish with every result; nothing is left waiting.
func TestRouteWaitChurn(t *testing.T) {
	const funs, requests = 5, 20
	echo := func(_ context.Context, _ string, c *planner.Call) (any, error) { return c.Args[0], nil }
	fns := map[string]fn{}
	for k := range funs {
		fns[fmt.Sprintf("f%d", k)] = echo
	}
	for round := range 5 {
		router := newFunRouter()
		router.openFun("f0")
		r := &planner.Runner{Router: router, Executor: newFuncs(fns), RouteWait: planner.RouteWait{Watch: router.Watch}}
		// s<i> calls f<i%funs>; from s5 on, each passes on the result of
		// the step five before it.
		var b strings.Builder
		b.WriteString(`{"route_wait_ms": 60000, "cmds": [`)
		for i := range 40 {
			if i > 0 {
				b.WriteString(",")
			}
			arg := fmt.Sprint(i)
			if i >= funs {
				arg = fmt.Sprintf(`"s%d"`, i-funs)
			}
			fmt.Fprintf(&b, `{"name": "s%d", "fun": "f%d", "args": [%s]}`, i, i%funs, arg)
		}
		b.WriteString("]}")
		var results []<-chan runResult
		for range requests {
			results = append(results, runAsync(context.Background(), r, mustPlan(t, b.String())))
		}
		for k := range funs {
			for j := range funs {
				router.wake(fmt.Sprintf("f%d", j)) // nothing new: the steps look again and wait on
			}
			if k > 0 {
				router.openFun(fmt.Sprintf("f%d", (k+round)%funs))
			}
		}
		router.openFun(fmt.Sprintf("f%d", round%funs))
		for _, res := range results {
			got := testwaitRecv(t, res)
			require.Nil(t, got.err, "round %d", round)
			require.Equal(t, map[string]any{"s35": int64(0), "s36": int64(1), "s37": int64(2), "s38": int64(3), "s39": int64(4)},
				got.results, "the sinks, each the end of a chain from s0…s4")
		}
		assert.Zero(t, r.Waiting())
	}
}

// With on_error continue, a step whose wait ends without a route fails in
// its branch only: NO_ROUTE for it, CANCELLED for what depends on it.
func TestRouteWaitContinue(t *testing.T) {
	router := newFunRouter()
	router.openFun("echo")
	r := &planner.Runner{Router: router, Executor: newFuncs(nil), RouteWait: planner.RouteWait{Watch: router.Watch}}
	o := r.Execute(context.Background(), mustPlan(t, `{"route_wait_ms": 50, "on_error": "continue", "cmds": [
		{"name": "a", "fun": "echo", "args": [1]},
		{"name": "b", "fun": "never", "args": ["a"]},
		{"name": "c", "fun": "echo", "args": ["b"]},
		{"name": "d", "fun": "echo", "args": ["a"]}]}`))
	require.Nil(t, o.Err)
	assert.Equal(t, map[string]any{"d": int64(1)}, o.Results)
	require.Len(t, o.Errors, 2)
	assert.Equal(t, schema.CodeNoRoute, o.Errors["b"].Code)
	waited, _ := details(t, o.Errors["b"])["waited_ms"].(int64)
	assert.GreaterOrEqual(t, waited, int64(50))
	assert.Equal(t, schema.CodeCancelled, o.Errors["c"].Code)
	assert.Zero(t, r.Waiting())
}
