// Calls an MPREG cluster from JavaScript with the plain nats.js client:
// one request (a DAG of commands) on mpreg.<cluster>.rpc, in JSON.
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node caller.mjs
import { connect } from "nats";
import { rpc } from "./rpc.mjs";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";

const nc = await connect({ servers });
const response = await rpc(nc, cluster, "js-caller", [
  { name: "|first", fun: "echo", args: ["hi there!"] },
  { name: "|second", fun: "echo", args: ["|first"] },
  { name: "|third", fun: "echos", args: ["|first", "AND ME TOO"] },
  // {"$ref": name, "path": JSON Pointer} selects into a result.
  { name: "|pick", fun: "echo", args: [{ $ref: "|third", path: "/1" }] },
], 5000);
console.log(JSON.stringify(response));
await nc.close();
process.exit(response.error ? 1 : 0);
