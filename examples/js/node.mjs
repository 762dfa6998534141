// Serves a function to an MPREG cluster from JavaScript, as a node, with the
// mpreg package (sdk/js): it announces itself, heart-beats, answers exec,
// info and sync, and drains (says goodbye, finishes its steps) on SIGTERM.
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node node.mjs
// offers shout(s) (upper case plus "!") with loc "js", and a retry policy
// for it.
import { serve, MpregError } from "mpreg";

const node = await serve({
  servers: (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(","),
  cluster: process.env.MPREG_CLUSTER || "default",
  id: process.env.MPREG_NODE_ID || "js-1",
  meta: { name: "javascript example" },
});

// shout(s), by position or by name. A planner tries a step of it that
// failed (FUNCTION_ERROR, NODE_UNAVAILABLE, a TIMEOUT of the step) again:
// 3 attempts in all, 50 ms then 100 ms later, give or take 10%.
node.register("shout", ([s]) => {
  if (typeof s !== "string") throw new MpregError("INVALID_ARGUMENT", "shout: s: want string", { details: { param: "s" } });
  return s.toUpperCase() + "!";
}, {
  params: ["s"],
  locs: ["js"],
  retry: { attempts: 3, initialBackoffMs: 50, maxBackoffMs: 1000, multiplier: 2, jitter: 0.1 },
});
console.log(`node ${node.id} serving shout on cluster ${node.cluster}`);
