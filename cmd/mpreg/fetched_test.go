package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/schema"
)

// The trace table has a FETCHED column only when a step fetched values
// passed by reference.
func TestPrintTraceFetched(t *testing.T) {
	var b bytes.Buffer
	printTrace(&b, []schema.TraceEntry{{Step: "x", Fun: "make", Node: "a", Attempt: 1, Code: "ok"}}, false)
	require.NotContains(t, b.String(), "FETCHED")
	b.Reset()
	printTrace(&b, []schema.TraceEntry{{Step: "x", Fun: "make", Node: "a", Attempt: 1, Code: "ok"},
		{Step: "y", Fun: "digest", Node: "b", Attempt: 1, FetchedBytes: 50 << 20, Code: "ok"}}, false)
	require.Regexp(t, `(?m)^STEP\s+FUN\s+NODE\s+ATTEMPT\s+START\s+QUEUE\s+RUN\s+FETCHED\s+OUTCOME\n`+
		`x\s+make\s+a\s+1\s+0s\s+0s\s+0s\s+0\s+ok\ny\s+digest\s+b\s+1\s+0s\s+0s\s+0s\s+50MiB\s+ok$`, b.String())
}
