// Latency of a TypeScript node of this package against nats.js raw
// request/reply, in one run, the scenarios taking turns:
//
//   raw        a nats.js request to a raw nats.js responder (one hop)
//   exec       an exec request to the node, in MessagePack without header,
//              as a Go planner sends it (one hop)
//   raw relay  a nats.js request to a raw responder that asks another (two hops)
//   planner    a request to a Go planner (P.<cluster>.rpc) whose one step,
//              echo, runs on the node (two hops)
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node bench/node.mjs [ROUNDS [CALLS]]
//
// needs a Go node (the planner) on the cluster, e.g. `mpreg server`.
import { connect, headers } from "@nats-io/transport-node";
import { encode as mpEncode, decode as mpDecode } from "@msgpack/msgpack";
import { serve } from "../dist/index.js";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";
const rounds = Number(process.argv[2] || 10);
const calls = Number(process.argv[3] || 500);
const P = `mpreg.${cluster}`;
const te = new TextEncoder();
const td = new TextDecoder();

const nc = await connect({ servers }); // the callers
const rc = await connect({ servers }); // the raw responders
const loc = `bench-${process.pid}`;
const node = await serve({ servers, cluster, id: `ts-bench-${process.pid}`, locs: [loc], handleSignals: false },
  { echo: ([x]) => x });

rc.subscribe("bench.raw", { callback: (_e, m) => m.respond(te.encode(JSON.stringify({ result: JSON.parse(td.decode(m.data)).args[0] }))) });
rc.subscribe("bench.relay", {
  callback: (_e, m) => {
    rc.request("bench.raw", m.data, { timeout: 5000 }).then((r) => m.respond(r.data), () => {});
  },
});
await rc.flush();

const payload = "x".repeat(16);
const execBody = mpEncode({ cluster, id: "bench/e", fun: "echo", args: [payload] });
const rpcHeaders = headers();
rpcHeaders.set("Content-Type", "application/json");
const rpcBody = te.encode(JSON.stringify({ cmds: [{ name: "e", fun: "echo", args: [payload], locs: [loc] }], route_wait_ms: 5000 }));
const rawBody = te.encode(JSON.stringify({ args: [payload] }));

const scenarios = {
  raw: async () => JSON.parse(td.decode((await nc.request("bench.raw", rawBody, { timeout: 5000 })).data)).result,
  exec: async () => mpDecode((await nc.request(`${P}.node.${node.id}.exec`, execBody, { timeout: 5000 })).data).result,
  "raw relay": async () => JSON.parse(td.decode((await nc.request("bench.relay", rawBody, { timeout: 5000 })).data)).result,
  planner: async () => JSON.parse(td.decode((await nc.request(`${P}.rpc`, rpcBody, { headers: rpcHeaders, timeout: 5000 })).data)).results.e,
};

const lat = Object.fromEntries(Object.keys(scenarios).map((k) => [k, []]));
for (const [name, f] of Object.entries(scenarios)) { // warm up, and check the answers
  for (let i = 0; i < 100; i++) {
    const v = await f();
    if (v !== payload) throw new Error(`${name}: got ${JSON.stringify(v)}`);
  }
}
for (let r = 0; r < rounds; r++) {
  for (const [name, f] of Object.entries(scenarios)) {
    for (let i = 0; i < calls; i++) {
      const t0 = process.hrtime.bigint();
      await f();
      lat[name].push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  }
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];
console.log(`${rounds} rounds of ${calls} sequential calls each, taking turns; payload ${payload.length} bytes`);
console.log("scenario     p50 µs   p90 µs   p99 µs");
const p50 = {};
for (const [name, a] of Object.entries(lat)) {
  a.sort((x, y) => x - y);
  p50[name] = pct(a, 0.5);
  console.log(`${name.padEnd(10)} ${pct(a, 0.5).toFixed(0).padStart(8)} ${pct(a, 0.9).toFixed(0).padStart(8)} ${pct(a, 0.99).toFixed(0).padStart(8)}`);
}
console.log(`exec / raw: ${(p50.exec / p50.raw).toFixed(2)}×   planner / raw relay: ${(p50.planner / p50["raw relay"]).toFixed(2)}×`);
if (process.env.MPREG_BENCH_JSON) { // for mpreg bench --js: one line it reads
  console.log("MPREG-BENCH-JSON " + JSON.stringify({ rows: [
    { name: "ts-node-exec", p50_us: p50.exec, base: "nats.js raw", base_p50_us: p50.raw },
    { name: "ts-node-via-planner", p50_us: p50.planner, base: "nats.js raw relay", base_p50_us: p50["raw relay"] },
  ] }));
}
await node.drain();
await nc.close();
await rc.close();
