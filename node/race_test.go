//go:build race

package node_test

// raceEnabled: the race detector slows big transfers ten times over, so
// load tests scale down under it.
const raceEnabled = true
