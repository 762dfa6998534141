package node

// SetIncarnation gives a node that has not started a chosen incarnation,
// as two processes started in the same millisecond have.
func SetIncarnation(n *Node, inc int64) { n.ann.SetIncarnation(inc) }

// SetReplyBatch turns the batching of replies under load (replyBatch) on
// or off, for a benchmark that compares the two in one process.
func SetReplyBatch(on bool) { unbatched.Store(!on) }
