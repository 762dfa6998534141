// Reads a value passed by reference (docs/PROTOCOL.md §4.7) with nats.js's
// object store API: it calls a function whose result is too big for a
// message, gets {"$obj": {bucket, name, size, sha256, encoding}} in its
// place, fetches the object, checks its SHA-256, and deletes it (the
// caller has had it).
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node reference.mjs [FUN [ARGS-JSON]]
//
// FUN defaults to blob and ARGS-JSON to [1048576]: blob(size) returns size
// bytes, stored as they are (encoding "bytes").
import { createHash } from "node:crypto";
import { connect } from "nats";
import { rpc } from "./rpc.mjs";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";
const fun = process.argv[2] || "blob";
const args = JSON.parse(process.argv[3] || "[1048576]");

const nc = await connect({ servers });
const response = await rpc(nc, cluster, "js-ref", [{ name: "big", fun, args }], 30000);
if (response.error) {
  console.log(JSON.stringify(response));
  process.exit(1);
}
const result = response.results.big;
const ref = result && Object.keys(result).length === 1 ? result.$obj : undefined;
if (!ref) {
  console.log(JSON.stringify({ inline: result }));
  process.exit(0);
}

// The object store API: the bucket is a view of JetStream.
const os = await nc.jetstream().views.os(ref.bucket);
const data = await os.getBlob(ref.name); // null when missing; nats.js checks the digest
if (data === null) {
  throw new Error(`object ${ref.bucket}/${ref.name} is gone`);
}
const sha256 = createHash("sha256").update(data).digest("hex");
if (data.length !== ref.size || sha256 !== ref.sha256) {
  throw new Error(`object ${ref.name}: ${data.length} bytes of SHA-256 ${sha256}, the reference says ${ref.size} of ${ref.sha256}`);
}
await os.delete(ref.name);
console.log(JSON.stringify({ name: ref.name, encoding: ref.encoding, size: data.length, sha256 }));
await nc.close();
