// Caller benchmark: the p50 of sequential call("echo", …) through an MPREG
// cluster beside nats.js raw request/reply to a raw responder (nats.js too,
// in a process of its own, as the cluster's node is), alternating in rounds
// within one run so that both see the same machine.
//
//   MPREG_SERVERS=127.0.0.1:4222 node bench/caller.mjs [rounds] [callsPerRound]
//
// Needs a running cluster whose nodes offer echo (any mpreg node does), and
// the package built (npm run build).
import { spawn } from "node:child_process";
import { once } from "node:events";

import { connect as natsConnect } from "@nats-io/transport-node";

import { connect } from "../dist/index.js";

const servers = process.env.MPREG_SERVERS ?? "127.0.0.1:4222";
const cluster = process.env.MPREG_CLUSTER ?? "default";
const rounds = Number(process.argv[2] ?? 10);
const perRound = Number(process.argv[3] ?? 500);

function p50(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

if (process.argv[2] === "--responder") {
  // The raw responder: reads JSON, answers JSON, as little as a node could.
  const nc = await natsConnect({ servers });
  nc.subscribe(process.argv[3], {
    callback: (_err, m) => {
      const body = JSON.parse(dec.decode(m.data));
      m.respond(enc.encode(JSON.stringify({ result: body.args[0] })));
    },
  });
  await nc.flush();
  console.log("ready");
  process.stdin.resume();
  process.stdin.on("end", () => nc.close().then(() => process.exit(0)));
} else {
  await main();
}

async function main() {
  const rawSubject = `bench.raw.${process.pid}`;
  const responder = spawn(process.execPath, [new URL(import.meta.url).pathname, "--responder", rawSubject], {
    stdio: ["pipe", "pipe", "inherit"],
    env: process.env,
  });
  await once(responder.stdout, "data");

  const results = {};
  for (const codec of ["json", "msgpack"]) {
    const c = await connect({ servers, cluster, codec });
    const raw = await natsConnect({ servers });
    const payload = enc.encode(JSON.stringify({ fun: "echo", args: ["hello"] }));
    // Warm up both paths.
    for (let i = 0; i < 200; i++) {
      await c.call("echo", ["hello"]);
      await raw.request(rawSubject, payload, { timeout: 5000 });
    }
    // A Go responder for comparison: the node's own info subject (§7.4),
    // which answers its hello without planning anything.
    // (whoami is a demo function: without it, no such comparison.)
    const info = await c.call("whoami").then((n) => c.subjects.info(n), () => undefined);
    const mpreg = [];
    const natsRaw = [];
    const goInfo = [];
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < perRound; i++) {
        const t0 = process.hrtime.bigint();
        await c.call("echo", ["hello"]);
        mpreg.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      for (let i = 0; i < perRound; i++) {
        const t0 = process.hrtime.bigint();
        const m = await raw.request(rawSubject, payload, { timeout: 5000 });
        JSON.parse(dec.decode(m.data));
        natsRaw.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      for (let i = 0; info !== undefined && i < perRound; i++) {
        const t0 = process.hrtime.bigint();
        const m = await raw.request(info, undefined, { timeout: 5000 });
        JSON.parse(dec.decode(m.data));
        goInfo.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
    }
    results[codec] = { mpreg: p50(mpreg), raw: p50(natsRaw), info: p50(goInfo) };
    await c.close();
    await raw.close();
  }
  responder.stdin.end();
  await once(responder, "exit");

  if (process.env.MPREG_BENCH_JSON) { // for mpreg bench --js: one line it reads
    console.log("MPREG-BENCH-JSON " + JSON.stringify({ rows: Object.entries(results).map(([codec, r]) => (
      { name: `ts-call-${codec}`, p50_us: r.mpreg, base: "nats.js raw", base_p50_us: r.raw })) }));
  }
  console.log(`caller p50 over ${rounds} rounds of ${perRound} sequential calls each, alternating:`);
  for (const [codec, r] of Object.entries(results)) {
    console.log(
      `  ${codec.padEnd(7)} mpreg call("echo") ${r.mpreg.toFixed(0)} µs   raw request/reply: to a nats.js responder ${r.raw.toFixed(0)} µs (ratio ${(r.mpreg / r.raw).toFixed(2)}x), to the Go node's info ${r.info === undefined ? "n/a (no whoami)" : `${r.info.toFixed(0)} µs (ratio ${(r.mpreg / r.info).toFixed(2)}x)`}`,
    );
  }
}
