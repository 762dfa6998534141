// Calls an MPREG cluster from JavaScript with the plain nats.js client:
// one request (a DAG of commands) on mpreg.<cluster>.rpc, in JSON.
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node caller.mjs
import { connect, headers } from "nats";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";

const nc = await connect({ servers });
const timeoutMs = 5000;
const request = {
  // Ids should be unique: a cancel on mpreg.<cluster>.cancel names one.
  id: `js-caller-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
  cmds: [
    { name: "|first", fun: "echo", args: ["hi there!"] },
    { name: "|second", fun: "echo", args: ["|first"] },
    { name: "|third", fun: "echos", args: ["|first", "AND ME TOO"] },
    // {"$ref": name, "path": JSON Pointer} selects into a result.
    { name: "|pick", fun: "echo", args: [{ $ref: "|third", path: "/1" }] },
  ],
  timeout_ms: timeoutMs,
  // The deadline too, as an absolute time: a planner that reads the
  // request late runs none of it after we stopped waiting.
  deadline_ms: Date.now() + timeoutMs,
};
const h = headers();
h.set("Content-Type", "application/json");
const msg = await nc.request(`mpreg.${cluster}.rpc`, JSON.stringify(request), { headers: h, timeout: timeoutMs + 1000 });
const response = JSON.parse(new TextDecoder().decode(msg.data));
console.log(JSON.stringify(response));
await nc.close();
process.exit(response.error ? 1 : 0);
