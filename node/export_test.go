package node

// SetIncarnation gives a node that has not started a chosen incarnation,
// as two processes started in the same millisecond have.
func SetIncarnation(n *Node, inc int64) { n.ann.SetIncarnation(inc) }
