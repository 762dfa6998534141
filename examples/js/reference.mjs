// Reads a value passed by reference (docs/PROTOCOL.md §4.7) with nats.js's
// object store API. The mpreg package fetches references itself; here the
// call keeps the reference ({ keepRefs: true }): {"$obj": {bucket, name,
// size, sha256, encoding}}. The example fetches the object, checks its
// SHA-256, and deletes it (the caller has had it).
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node reference.mjs [FUN [ARGS-JSON]]
//
// FUN defaults to blob and ARGS-JSON to [1048576]: blob(size) returns size
// bytes, stored as they are (encoding "bytes").
import { createHash } from "node:crypto";
import { Objm } from "@nats-io/obj";
import { connect } from "mpreg";

const c = await connect({
  servers: (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(","),
  cluster: process.env.MPREG_CLUSTER || "default",
});
const fun = process.argv[2] || "blob";
const args = JSON.parse(process.argv[3] || "[1048576]");
const { results } = await c.run([{ name: "big", fun, args }],
  { id: `js-ref-${Date.now().toString(36)}`, timeoutMs: 30000, keepRefs: true });
const ref = results.big?.$obj;
if (!ref) {
  console.log(JSON.stringify({ inline: results.big }));
  process.exit(0);
}

// The bucket is a view of JetStream: any NATS client reads it.
const os = await new Objm(c.nc).open(ref.bucket);
const data = await os.getBlob(ref.name); // null when missing
const sha256 = createHash("sha256").update(data).digest("hex");
if (data.length !== ref.size || sha256 !== ref.sha256) {
  throw new Error(`object ${ref.name}: ${data.length} bytes of SHA-256 ${sha256}, the reference says ${ref.size} of ${ref.sha256}`);
}
await os.delete(ref.name);
console.log(JSON.stringify({ name: ref.name, encoding: ref.encoding, size: data.length, sha256 }));
await c.close();
