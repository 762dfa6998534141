// Calls an MPREG cluster from JavaScript with the mpreg package (sdk/js):
// one request, a DAG of commands.
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node caller.mjs
import { connect } from "mpreg";

const c = await connect({
  servers: (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(","),
  cluster: process.env.MPREG_CLUSTER || "default",
});
const response = await c.run([
  { name: "|first", fun: "echo", args: ["hi there!"] },
  { name: "|second", fun: "echo", args: ["|first"] },
  { name: "|third", fun: "echos", args: ["|first", "AND ME TOO"] },
  // {"$ref": name, "path": JSON Pointer} selects into a result.
  { name: "|pick", fun: "echo", args: [{ $ref: "|third", path: "/1" }] },
], { id: `js-caller-${Date.now().toString(36)}`, timeoutMs: 5000 }); // a failed request throws MpregError
console.log(JSON.stringify(response));
await c.close();
