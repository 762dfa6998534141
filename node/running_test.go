package node

import "testing"

func TestRunningSet(t *testing.T) {
	var r runningSet
	cancelled := map[int]bool{}
	entry := func(i int) *runEntry { return r.add("id", func() { cancelled[i] = true }) }
	a, b, c := entry(1), entry(2), entry(3)
	r.remove("id", b)
	if !r.cancel("id") {
		t.Fatal("cancel found nothing")
	}
	if !cancelled[1] || cancelled[2] || !cancelled[3] {
		t.Fatalf("cancelled %v, want 1 and 3", cancelled)
	}
	r.remove("id", a) // after cancel: nothing left, nothing to do
	r.remove("id", c)
	if r.cancel("id") {
		t.Fatal("cancel found entries after they were removed")
	}
	d := r.add("other", func() {})
	r.remove("other", d)
	if len(r.m) != 0 {
		t.Fatalf("set not empty: %v", r.m)
	}
}
