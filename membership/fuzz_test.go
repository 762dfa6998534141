package membership_test

import (
	"slices"
	"testing"
	"time"

	"github.com/mpreg/mpreg/membership"
	"github.com/mpreg/mpreg/schema"
)

// The fuzz input is a sequence of operations on a table over three node
// ids. Each operation is one byte, kind + numKinds*node, followed by the
// parameter bytes its kind reads (zero once the input runs out).
const (
	opHello = iota
	opHeartbeat
	opGoodbye
	opMarkDead
	opAdvance
	opPrune
	opPick
	opBegin
	opEnd
	numKinds
)

var fuzzNodes = []string{"n0", "n1", "n2"}

const (
	fuzzDeadAfter   = 3 * time.Second
	fuzzForgetAfter = 10 * time.Second
)

// op encodes one operation for a seed.
func op(kind, node int, params ...byte) []byte {
	return append([]byte{byte(kind + numKinds*node)}, params...)
}

func ops(first byte, list ...[]byte) []byte {
	out := []byte{first}
	for _, o := range list {
		out = append(out, o...)
	}
	return out
}

// fuzzLocs is the subset of {x, y} named by bits 0 and 1 of b.
func fuzzLocs(b byte) []string {
	var l []string
	if b&1 != 0 {
		l = append(l, "x")
	}
	if b&2 != 0 {
		l = append(l, "y")
	}
	return l
}

// fuzzFuns builds a hello's funs from a byte: bit 0 offers f with the locs
// of bits 1-2, bit 3 offers g with the locs of bits 4-5.
func fuzzFuns(b byte) map[string][]string {
	f := map[string][]string{}
	if b&1 != 0 {
		f["f"] = append([]string{}, fuzzLocs(b>>1)...)
	}
	if b&8 != 0 {
		f["g"] = append([]string{}, fuzzLocs(b>>4)...)
	}
	return f
}

// nodeModel is what the test knows of a node from the operations it applied.
type nodeModel struct {
	goneInc   int64     // incarnation that said goodbye; 0 when none
	goneHeard time.Time // last time the gone incarnation was heard from
	maxInc    int64     // highest incarnation the table held
}

func FuzzMerge(f *testing.F) {
	const (
		n0 = 0
		n1 = 1
		n2 = 2
	)
	f.Add(ops(0,
		op(opHello, n1, 0, 1, 1), op(opPick, n1, 0, 0, 0),
		op(opGoodbye, n1, 0), op(opPick, n1, 0, 0, 0),
		op(opHello, n1, 0, 2, 1), op(opPick, n1, 0, 0, 0),
		op(opHello, n1, 1, 0, 1), op(opPick, n1, 0, 0, 0)))
	f.Add(ops(1,
		op(opHello, n0, 0, 0, 9), op(opHello, n1, 0, 0, 9), op(opAdvance, n0, 16),
		op(opPick, n0, 0, 0, 0), op(opHeartbeat, n1, 0, 0, 0), op(opPick, n0, 1, 0, 0),
		op(opAdvance, n0, 80), op(opPrune, n0), op(opPick, n0, 0, 0, 0)))
	f.Add(ops(0,
		op(opHello, n2, 2, 2, 15), op(opHello, n2, 2, 1, 1), op(opHeartbeat, n2, 2, 3, 2),
		op(opHello, n2, 1, 3, 1), op(opMarkDead, n2), op(opPick, n2, 0, 3, 0),
		op(opHeartbeat, n2, 2, 2, 1), op(opPick, n2, 0, 3, 0)))
	f.Add(ops(0,
		op(opHello, n1, 0, 0, 1), op(opHello, n2, 0, 0, 1), op(opGoodbye, n1, 0),
		op(opAdvance, n0, 36), op(opHeartbeat, n1, 0, 0, 1), op(opPrune, n0),
		op(opAdvance, n0, 36), op(opHeartbeat, n1, 0, 0, 1), op(opPrune, n0),
		op(opAdvance, n0, 36), op(opHeartbeat, n1, 0, 0, 1), op(opPrune, n0),
		op(opHello, n1, 0, 0, 1), op(opPick, n0, 0, 0, 0),
		op(opAdvance, n0, 60), op(opPrune, n0), op(opHello, n1, 0, 0, 1), op(opPick, n0, 0, 0, 0)))
	f.Add(ops(1,
		op(opHello, n0, 0, 0, 1), op(opHello, n1, 0, 0, 1), op(opHello, n2, 0, 0, 1),
		op(opHeartbeat, n1, 0, 0, 0), op(opHeartbeat, n2, 0, 0, 4), op(opBegin, n0), op(opBegin, n0),
		op(opPick, n0, 0, 0, 0), op(opPick, n0, 0, 0, 2), op(opEnd, n0), op(opEnd, n0), op(opEnd, n0),
		op(opPick, n0, 0, 0, 0)))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		clk := newClock()
		self := ""
		if data[0]&1 != 0 {
			self = "n0"
		}
		tb := membership.New(membership.Config{Self: self, DeadAfter: fuzzDeadAfter, ForgetAfter: fuzzForgetAfter, Now: clk.Now})
		data = data[1:]
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		model := map[string]*nodeModel{}
		for _, id := range fuzzNodes {
			model[id] = &nodeModel{}
		}

		for step := 0; len(data) > 0; step++ {
			b := next()
			kind, id := int(b)%numKinds, fuzzNodes[int(b)/numKinds%len(fuzzNodes)]
			m := model[id]
			switch kind {
			case opHello:
				inc, ver, funs := 1+int64(next()%4), int64(next()%4), fuzzFuns(next())
				h := &schema.Hello{Cluster: "default", Node: id, Incarnation: inc, Version: ver, Funs: funs}
				changed := tb.ApplyHello(h)
				if m.goneInc != 0 {
					if inc > m.goneInc && !changed {
						t.Fatalf("step %d: hello %s/%d after goodbye of %d was not accepted", step, id, inc, m.goneInc)
					}
					if inc <= m.goneInc && changed {
						t.Fatalf("step %d: hello %s/%d accepted after goodbye of %d", step, id, inc, m.goneInc)
					}
					if inc == m.goneInc {
						m.goneHeard = clk.Now()
					}
					if inc > m.goneInc {
						m.goneInc = 0
					}
				}
			case opHeartbeat:
				inc, ver, load := 1+int64(next()%4), int64(next()%4), int64(next()%6)-1
				tb.ApplyHeartbeat(&schema.Heartbeat{Cluster: "default", Node: id, Incarnation: inc, Version: ver,
					Load: schema.Load{Inflight: load, Limit: 4}})
				if m.goneInc != 0 && inc == m.goneInc {
					m.goneHeard = clk.Now()
				}
			case opGoodbye:
				inc := 1 + int64(next()%4)
				if tb.ApplyGoodbye(&schema.Goodbye{Cluster: "default", Node: id, Incarnation: inc}) {
					if inc < m.maxInc {
						t.Fatalf("step %d: goodbye %s/%d accepted while %d was held", step, id, inc, m.maxInc)
					}
					m.goneInc, m.goneHeard, m.maxInc = inc, clk.Now(), inc
				}
			case opMarkDead:
				tb.MarkDead(id)
			case opAdvance:
				clk.Advance(time.Duration(next()) * 250 * time.Millisecond)
			case opPrune:
				tb.Prune()
				for _, nid := range fuzzNodes {
					nm := model[nid]
					if known(tb, nid) {
						continue
					}
					if nm.goneInc != 0 && clk.Now().Sub(nm.goneHeard) <= fuzzForgetAfter {
						t.Fatalf("step %d: %s forgotten %v after its gone incarnation %d was last heard",
							step, nid, clk.Now().Sub(nm.goneHeard), nm.goneInc)
					}
					*nm = nodeModel{} // forgotten: the table starts afresh
				}
			case opPick:
				checkPick(t, step, tb, model, self, next(), next(), next())
			case opBegin:
				tb.Begin(id)
			case opEnd:
				tb.End(id)
			}
			checkHeld(t, step, tb, model)
		}
	})
}

// known reports whether the table holds node in any state. All fuzz
// incarnations are at least 1, so a heartbeat of incarnation 0 changes
// nothing: it is ignored as older when the node is known, and asks for a
// hello when it is not.
func known(tb *membership.Table, node string) bool {
	return !tb.ApplyHeartbeat(&schema.Heartbeat{Cluster: "default", Node: node, Incarnation: 0})
}

// checkHeld checks that held incarnations never decrease and that a node
// that said goodbye stays hidden until a newer incarnation says hello.
func checkHeld(t *testing.T, step int, tb *membership.Table, model map[string]*nodeModel) {
	for _, id := range fuzzNodes {
		m := model[id]
		p, ok := tb.Get(id)
		if !ok {
			continue
		}
		inc := p.Hello.Incarnation
		if inc < m.maxInc {
			t.Fatalf("step %d: %s incarnation went from %d down to %d", step, id, m.maxInc, inc)
		}
		m.maxInc = inc
		if m.goneInc != 0 {
			t.Fatalf("step %d: %s visible with incarnation %d after goodbye of %d", step, id, inc, m.goneInc)
		}
	}
}

func checkPick(t *testing.T, step int, tb *membership.Table, model map[string]*nodeModel, self string, funB, locB, exB byte) {
	fun := []string{"f", "g", "h"}[funB%3]
	locs := fuzzLocs(locB)
	var exclude []string
	for i, id := range fuzzNodes {
		if exB&(1<<i) != 0 {
			exclude = append(exclude, id)
		}
	}
	eligible := tb.Eligible(fun, locs)
	var candidates []string
	for _, id := range eligible {
		if !slices.Contains(exclude, id) {
			candidates = append(candidates, id)
		}
	}
	node, ok := tb.Pick(fun, locs, exclude)
	if !ok {
		if len(candidates) > 0 {
			t.Fatalf("step %d: Pick(%s, %v, %v) found nothing among %v", step, fun, locs, exclude, candidates)
		}
		return
	}
	if !slices.Contains(candidates, node) {
		t.Fatalf("step %d: Pick(%s, %v, %v) = %s, not among %v", step, fun, locs, exclude, node, candidates)
	}
	if g := model[node].goneInc; g != 0 {
		t.Fatalf("step %d: Pick returned %s after goodbye of incarnation %d", step, node, g)
	}
	p, found := tb.Get(node)
	if !found || !p.Alive {
		t.Fatalf("step %d: Pick returned %s, which is not alive (%+v)", step, node, p)
	}
	have, offers := p.Hello.Funs[fun]
	if !offers {
		t.Fatalf("step %d: Pick returned %s, which does not offer %s", step, node, fun)
	}
	for _, l := range locs {
		if !slices.Contains(have, l) {
			t.Fatalf("step %d: Pick returned %s, which lacks loc %s for %s", step, node, l, fun)
		}
	}
	// The pick is among the least loaded, and self wins a tie.
	score := func(id string) int64 {
		q, _ := tb.Get(id)
		s := q.Outstanding
		if id != self && q.Load.Inflight > 0 {
			s += q.Load.Inflight
		}
		return s
	}
	for _, id := range candidates {
		if score(id) < score(node) {
			t.Fatalf("step %d: Pick returned %s (load %d) over %s (load %d)", step, node, score(node), id, score(id))
		}
		if id == self && node != self && score(id) == score(node) {
			t.Fatalf("step %d: Pick returned %s over self in a tie", step, node)
		}
	}
}
