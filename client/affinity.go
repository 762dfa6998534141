package client

import (
	"math/rand/v2"

	"github.com/mpreg/mpreg/schema"
)

// maxAffinitySteps bounds the commands the client reads to choose a
// request's planner: past it the rest of a big graph does not change much
// where it is best planned, and choosing must stay cheap.
const maxAffinitySteps = 64

// plannerFor returns the node best placed to plan req, by the client's
// membership view: the node that can run the most of its steps, and among
// those the least loaded one that can run the first. A request planned
// there runs those steps without a hop to another node (docs/PROTOCOL.md
// §4.6). ok is false without a view or when no live node offers any step;
// the request then goes to the shared rpc subject.
func (c *Client) plannerFor(req *schema.Request) (node string, ok bool) {
	if c.follower == nil || len(req.Cmds) == 0 {
		return "", false
	}
	first := req.Cmds[0]
	pick, havePick := c.table.Pick(first.Fun, first.Locs, nil)
	if len(req.Cmds) == 1 {
		return pick, havePick
	}
	count := make(map[string]int)
	best := 0
	for i := range min(len(req.Cmds), maxAffinitySteps) {
		cmd := &req.Cmds[i]
		for _, id := range c.table.Eligible(cmd.Fun, cmd.Locs) {
			count[id]++
			best = max(best, count[id])
		}
	}
	if best == 0 {
		return "", false
	}
	if havePick && count[pick] == best {
		return pick, true
	}
	ties := 0
	for id, n := range count {
		if n != best {
			continue
		}
		ties++
		if rand.IntN(ties) == 0 { // uniform among the best placed
			node = id
		}
	}
	return node, true
}
