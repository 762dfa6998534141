package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"reflect"

	"github.com/mpreg/mpreg/schema"
)

// scene is one request of the showcase and what it must give.
type scene struct {
	title string
	about []string
	req   *schema.Request
	// want are the expected results (nil: not checked); on failure, the
	// expected partial results.
	want map[string]any
	// wantErr is the expected error code; "" means success.
	wantErr schema.Code
	// check, when set, checks more (which node ran a step, timings…).
	check func(o *outcome) error
}

// verify reports how o differs from what the scene expects.
func (sc scene) verify(o *outcome) error {
	switch {
	case sc.wantErr == "" && o.err != nil:
		return fmt.Errorf("want success, got %w", o.err)
	case sc.wantErr != "" && o.err == nil:
		return fmt.Errorf("want %s, got success", sc.wantErr)
	case sc.wantErr != "" && o.err.Code != sc.wantErr:
		return fmt.Errorf("want %s, got %w", sc.wantErr, o.err)
	}
	if sc.want != nil && !reflect.DeepEqual(sc.want, o.results()) {
		return fmt.Errorf("want results %s, got %s", compact(sc.want), compact(o.results()))
	}
	if sc.check != nil {
		return sc.check(o)
	}
	return nil
}

// ranOn checks that each named step ran on the given node.
func ranOn(o *outcome, stepNode ...string) error {
	for i := 0; i+1 < len(stepNode); i += 2 {
		ev, ok := o.step(stepNode[i])
		if !ok {
			return fmt.Errorf("step %s did not run", stepNode[i])
		}
		if ev.Node != stepNode[i+1] {
			return fmt.Errorf("step %s ran on %q, want %q", stepNode[i], ev.Node, stepNode[i+1])
		}
	}
	return nil
}

// ref is a $ref to a command's result, optionally with a JSON Pointer.
func ref(name string, path ...string) map[string]any {
	m := map[string]any{"$ref": name}
	if len(path) > 0 {
		m["path"] = path[0]
	}
	return m
}

func args(v ...any) []any { return v }

func scenes() []scene {
	user := map[string]any{"user": map[string]any{"name": "ada", "langs": []any{"go", "c"}}}
	return []scene{
		{
			title: "The README example",
			about: []string{
				"|second and |third use the result of |first (a top-level string equal to a",
				"command's name is a reference). |third asks for loc dataset-a: only gamma has it.",
				"The default \"results\": \"sinks\" returns the steps nothing else refers to.",
			},
			req: &schema.Request{ID: "demo-1", Cmds: []schema.Command{
				{Name: "|first", Fun: "echo", Args: args("hi there!")},
				{Name: "|second", Fun: "echo", Args: args("|first")},
				{Name: "|third", Fun: "echos", Args: args("|first", "AND ME TOO"), Locs: []string{"dataset-a"}},
			}},
			want:  map[string]any{"|second": "hi there!", "|third": args("hi there!", "AND ME TOO")},
			check: func(o *outcome) error { return ranOn(o, "|third", "gamma") },
		},
		{
			title: "3 returns 1",
			about: []string{
				"Three independent steps run at the same time; |all starts once all three are done.",
				"add keeps integers as integers.",
			},
			req: &schema.Request{ID: "demo-2", Cmds: []schema.Command{
				{Name: "|x", Fun: "add", Args: args(1, 2)},
				{Name: "|y", Fun: "add", Args: args(10, 20)},
				{Name: "|z", Fun: "upper", Args: args("mpreg")},
				{Name: "|all", Fun: "echos", Args: args("|x", "|y", "|z")},
			}},
			want: map[string]any{"|all": args(int64(3), int64(30), "MPREG")},
		},
		{
			title: "4 returns 1",
			about: []string{
				"Four independent steps, some with keyword arguments, feed one final step.",
				"A float in, a float out: 1.5 + 2.25 = 3.75.",
			},
			req: &schema.Request{ID: "demo-3", Cmds: []schema.Command{
				{Name: "|a", Fun: "add", Args: args(1, 2)},
				{Name: "|b", Fun: "add", Kwargs: map[string]any{"a": 3, "b": 4}},
				{Name: "|c", Fun: "add", Args: args(1.5), Kwargs: map[string]any{"b": 2.25}},
				{Name: "|d", Fun: "upper", Kwargs: map[string]any{"s": "four"}},
				{Name: "|total", Fun: "echos", Args: args("|a", "|b", "|c", "|d")},
			}},
			want: map[string]any{"|total": args(int64(3), int64(7), 3.75, "FOUR")},
		},
		{
			title: "$ref with a path",
			about: []string{
				`{"$ref": NAME, "path": POINTER} picks a part of a result (a JSON Pointer), and`,
				"works at any depth, in args and in kwargs.",
			},
			req: &schema.Request{ID: "demo-4", Cmds: []schema.Command{
				{Name: "|data", Fun: "echo", Args: args(user)},
				{Name: "|name", Fun: "upper", Args: args(ref("|data", "/user/name"))},
				{Name: "|lang", Fun: "upper", Kwargs: map[string]any{"s": ref("|data", "/user/langs/1")}},
				{Name: "|card", Fun: "echo", Kwargs: map[string]any{"x": map[string]any{
					"name": ref("|name"), "second_lang": ref("|lang"), "langs": ref("|data", "/user/langs"),
				}}},
			}},
			want: map[string]any{"|card": map[string]any{"name": "ADA", "second_lang": "C", "langs": args("go", "c")}},
		},
		{
			title: "Routing by loc",
			about: []string{
				"A step runs only on a node that offers its function with every loc it lists.",
				"whoami returns the id of the node that ran it.",
			},
			req: &schema.Request{ID: "demo-5", Cmds: []schema.Command{
				{Name: "|gpu", Fun: "whoami", Locs: []string{"gpu"}},
				{Name: "|dataset", Fun: "whoami", Locs: []string{"dataset-a"}},
				{Name: "|gpu+model", Fun: "whoami", Locs: []string{"gpu", "model-a"}},
				{Name: "|cpu+dataset", Fun: "whoami", Locs: []string{"cpu", "dataset-a"}},
			}},
			want: map[string]any{"|gpu": "beta", "|dataset": "gamma", "|gpu+model": "beta", "|cpu+dataset": "gamma"},
			check: func(o *outcome) error {
				return ranOn(o, "|gpu", "beta", "|dataset", "gamma", "|gpu+model", "beta", "|cpu+dataset", "gamma")
			},
		},
		{
			title: "Parallel dataflow",
			about: []string{
				"|slow sleeps 300 ms while the chain |one -> |two -> |three runs beside it;",
				"|join waits for both. The whole request takes about 300 ms, not the sum.",
			},
			req: &schema.Request{ID: "demo-6", Cmds: []schema.Command{
				{Name: "|slow", Fun: "sleep", Args: args(300, "slept 300 ms")},
				{Name: "|one", Fun: "add", Args: args(1, 1)},
				{Name: "|two", Fun: "add", Args: args("|one", 1)},
				{Name: "|three", Fun: "add", Args: args("|two", 1)},
				{Name: "|join", Fun: "echos", Args: args("|slow", "|three")},
			}},
			want: map[string]any{"|join": args("slept 300 ms", int64(4))},
			check: func(o *outcome) error {
				slow, _ := o.step("|slow")
				three, ok := o.step("|three")
				if !ok {
					return fmt.Errorf("step |three did not run")
				}
				if end := three.Start.Add(three.Duration); !end.Before(slow.Start.Add(slow.Duration)) {
					return fmt.Errorf("the chain ended after |slow: it did not run in parallel")
				}
				return nil
			},
		},
		{
			title: `"results": "all"`,
			about: []string{
				`With "results": "all" every step's result comes back, not only the final ones.`,
			},
			req: &schema.Request{ID: "demo-7", Results: schema.ResultsAll, Cmds: []schema.Command{
				{Name: "|word", Fun: "upper", Args: args("all")},
				{Name: "|sum", Fun: "add", Args: args(40, 2)},
				{Name: "|both", Fun: "echos", Args: args("|word", "|sum")},
			}},
			want: map[string]any{"|word": "ALL", "|sum": int64(42), "|both": args("ALL", int64(42))},
		},
		bigValue(),
		{
			title: "A function fails",
			about: []string{
				"|save calls fail, so the request ends with FUNCTION_ERROR and the function's",
				"message. Results that finished before come back as partial results; |never",
				"depends on |save and does not start.",
			},
			req: &schema.Request{ID: "demo-9", Cmds: []schema.Command{
				{Name: "|fetch", Fun: "echo", Args: args("disk full on /data")},
				{Name: "|save", Fun: "fail", Args: args("|fetch")},
				{Name: "|never", Fun: "upper", Args: args("|save")},
			}},
			wantErr: schema.CodeFunctionError,
			want:    map[string]any{"|fetch": "disk full on /data"},
			check: func(o *outcome) error {
				if o.err.Step != "|save" || o.err.Message != "disk full on /data" {
					return fmt.Errorf("want the error of step |save with the function's message, got %w", o.err)
				}
				if _, ran := o.step("|never"); ran {
					return fmt.Errorf("step |never ran")
				}
				return nil
			},
		},
		{
			title: "No node has the loc: NO_ROUTE",
			about: []string{
				"No node offers whoami with loc tpu, so the request fails with NO_ROUTE.",
			},
			req: &schema.Request{ID: "demo-10", Cmds: []schema.Command{
				{Name: "|accel", Fun: "whoami", Locs: []string{"tpu"}},
			}},
			wantErr: schema.CodeNoRoute,
			want:    map[string]any{},
		},
		{
			title: "A cycle: INVALID_REQUEST",
			about: []string{
				"|a needs |c, |c needs |b, |b needs |a: the request is rejected before anything",
				"runs, and details.cycle names the commands.",
			},
			req: &schema.Request{ID: "demo-11", Cmds: []schema.Command{
				{Name: "|a", Fun: "echo", Args: args("|c")},
				{Name: "|b", Fun: "echo", Args: args("|a")},
				{Name: "|c", Fun: "echo", Args: args("|b")},
			}},
			wantErr: schema.CodeInvalidRequest,
			want:    map[string]any{},
			check: func(o *outcome) error {
				d, _ := o.err.Details.(map[string]any)
				if cyc, ok := d["cycle"].([]any); !ok || len(cyc) < 3 {
					return fmt.Errorf("want details.cycle with the 3 names, got %s", compact(o.err.Details))
				}
				if len(o.steps) > 0 {
					return fmt.Errorf("%d steps ran", len(o.steps))
				}
				return nil
			},
		},
	}
}

// bigSize is the size of the value of the bigValue scene.
const bigSize = 50_000_000

// bigValue is the scene in which a 50 MB value moves between two nodes.
func bigValue() scene {
	return scene{
		title: "A 50 MB value moves between nodes",
		about: []string{
			"|data makes 50 MB on beta (loc gpu); |digest and |size read it on gamma.",
			"A value over the inline limit (256 KiB) does not travel in the messages: the",
			"node that made it streams it into the cluster's JetStream object bucket, and a",
			"reference to it travels instead. gamma fetches the bytes once, checks their",
			"SHA-256, and streams them into sha256; length needs only the reference's size.",
			`"trace": true adds each step's fetched bytes to the response.`,
		},
		req: &schema.Request{ID: "demo-8", Trace: true, Cmds: []schema.Command{
			{Name: "|data", Fun: "blob", Args: args(bigSize, 7), Locs: []string{"gpu"}},
			{Name: "|digest", Fun: "sha256", Args: args("|data"), Locs: []string{"dataset-a"}},
			{Name: "|size", Fun: "length", Args: args("|data"), Locs: []string{"dataset-a"}},
		}},
		check: func(o *outcome) error {
			if err := ranOn(o, "|data", "beta", "|digest", "gamma", "|size", "gamma"); err != nil {
				return err
			}
			want := map[string]any{"|digest": patternSHA256(bigSize, 7), "|size": int64(bigSize)}
			if !reflect.DeepEqual(want, o.results()) {
				return fmt.Errorf("want results %s, got %s", compact(want), compact(o.results()))
			}
			if got := o.fetched()["|digest"]; got != bigSize {
				return fmt.Errorf("|digest fetched %d bytes, want %d", got, bigSize)
			}
			return nil
		},
	}
}

// patternSHA256 is the hex SHA-256 of blob(size, seed).
func patternSHA256(size, seed int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, &pattern{size: size, seed: seed})
	return hex.EncodeToString(h.Sum(nil))
}
