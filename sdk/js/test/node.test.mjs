// The node API (serve) against a real cluster: Go nodes with the demo
// functions (echo, echos) plan the requests; TypeScript nodes started here
// serve steps of them. Env: MPREG_SERVERS, MPREG_CLUSTER.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, headers } from "@nats-io/transport-node";
import { encode as mpEncode, decode as mpDecode } from "@msgpack/msgpack";
import { serve, MpregError } from "../dist/index.js";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";
const P = `mpreg.${cluster}`;
const goNodes = (process.env.MPREG_NODES || "").split(",").filter(Boolean);
// The Go nodes of the harness beat every 100 ms and take a node unheard for
// 300 ms for dead: the nodes here beat as often.
const heartbeatMs = Number(process.env.MPREG_HEARTBEAT_MS || 100);
const JSON_TYPE = "application/json";
const MSGPACK_TYPE = "application/msgpack";
const distURL = new URL("../dist/index.js", import.meta.url).href;

const uniq = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;
const te = new TextEncoder();
const td = new TextDecoder();

// A connection of the test's own, closed after the file's tests.
const nc = await connect({ servers });
test.after(() => nc.close());

// startNode serves fns as a fresh TypeScript node, drained after the test.
async function startNode(t, opts, fns) {
  const n = await serve({ servers, cluster, handleSignals: false, heartbeatMs, ...opts }, fns);
  t.after(() => n.drain());
  return n;
}

// readBody reads a reply as §3 says: Content-Type, else the first byte.
function readBody(m) {
  const ct = m.headers?.get("Content-Type") ?? "";
  const b = m.data;
  if (ct.startsWith(MSGPACK_TYPE) || (!ct && b.length && (b[0] & 0xf0) === 0x80)) return mpDecode(b);
  return JSON.parse(td.decode(b));
}

// rpc sends a whole request on P.rpc in codec and returns the response.
async function rpc(request, codec = "json", timeout = 20_000) {
  const h = headers();
  h.set("Content-Type", codec === "json" ? JSON_TYPE : MSGPACK_TYPE);
  const data = codec === "json" ? te.encode(JSON.stringify(request)) : mpEncode(request);
  const m = await nc.request(`${P}.rpc`, data, { headers: h, timeout });
  return readBody(m);
}

// exec sends one raw message to a node subject and returns the reply,
// decoded.
async function raw(subject, data, hdrs = {}, timeout = 5000) {
  let h;
  if (Object.keys(hdrs).length) {
    h = headers();
    for (const [k, v] of Object.entries(hdrs)) h.set(k, v);
  }
  const m = await nc.request(subject, data, { headers: h, timeout });
  return { body: readBody(m), headers: m.headers };
}

const stepNode = (resp, step) => resp.trace?.filter((e) => e.step === step).map((e) => e.node);

// waitFor polls cond until it holds or ms pass.
async function waitFor(what, cond, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a DAG Go step → TypeScript step → Go step, in both codecs, both ways between nodes", async (t) => {
  for (const nodeCodecs of [["msgpack", "json"], ["json"]]) {
    const loc = uniq("ts");
    const n = await startNode(t, { id: uniq("ts-dag"), locs: [loc], codecs: nodeCodecs }, {
      shout: ([s], _kw, ctx) => {
        assert.equal(typeof ctx.stepKey, "string");
        assert.ok(ctx.deadline > Date.now());
        return String(s).toUpperCase() + "!";
      },
      // kwargs bound by name onto positions, as a Go node's WithParams.
      greet: { fn: ([greeting, name]) => `${greeting}, ${name}`, params: ["greeting", "name"] },
    });
    for (const codec of ["json", "msgpack"]) {
      const resp = await rpc({
        id: uniq("dag"), route_wait_ms: 5000, trace: true, results: "all",
        cmds: [
          { name: "a", fun: "echo", args: ["from go"] },
          { name: "b", fun: "shout", args: ["a"], locs: [loc] },
          { name: "g", fun: "greet", args: ["hello"], kwargs: { name: "b" }, locs: [loc] },
          { name: "c", fun: "echos", args: ["b", "g", "and go"] },
        ],
      }, codec);
      assert.equal(resp.error, undefined, JSON.stringify(resp));
      assert.deepEqual(resp.results.c, ["FROM GO!", "hello, FROM GO!", "and go"], `${codec}, node ${nodeCodecs}`);
      assert.deepEqual(stepNode(resp, "b"), [n.id], "the TypeScript step ran on the TypeScript node");
      assert.notEqual(stepNode(resp, "a")[0], n.id);
      assert.notEqual(stepNode(resp, "c")[0], n.id);
    }
  }
});

test("a value by reference from a Go step reaches a TypeScript step as its bytes", async (t) => {
  const loc = uniq("ts");
  const { createHash } = await import("node:crypto");
  const n = await startNode(t, { id: uniq("ts-refs"), locs: [loc] }, {
    digest: ([data, lit]) => ({ len: data.length, binary: data instanceof Uint8Array, sha: createHash("sha256").update(data).digest("hex"), inner: lit.$obj }),
  });
  const size = 300_000; // over the Go node's inline limit (256 KiB): it passes the blob by reference
  const resp = await rpc({
    id: uniq("refs"), route_wait_ms: 5000, trace: true,
    cmds: [
      { name: "b", fun: "blob", args: [size] },
      { name: "ts", fun: "digest", args: ["b", { $lit: { $obj: "not a reference" } }], locs: [loc] },
      { name: "go", fun: "sha256", args: ["b"] },
      { name: "both", fun: "echos", args: ["ts", "go"] },
    ],
  });
  assert.equal(resp.error, undefined, JSON.stringify(resp));
  const [ts, goSha] = resp.results.both;
  assert.deepEqual(ts, { len: size, binary: true, sha: goSha, inner: "not a reference" });
  const entry = resp.trace.find((e) => e.step === "ts");
  assert.equal(entry.node, n.id);
  assert.equal(entry.fetched_bytes, size, "the TypeScript node fetched the object");
  // A reference to another bucket, or a malformed one, is refused.
  const ex = async (args) => (await raw(`${P}.node.${n.id}.exec`, te.encode(JSON.stringify({ cluster, id: "r/x", fun: "digest", args })))).body;
  const other = await ex([{ $obj: { bucket: "elsewhere", name: "x", size: 1, sha256: "0".repeat(64), encoding: "bytes" } }, {}]);
  assert.equal(other.error?.code, "PERMISSION_DENIED", JSON.stringify(other));
  const malformed = await ex([{ $obj: { bucket: "mpreg-" + cluster, name: "x" } }, {}]);
  assert.equal(malformed.error?.code, "INVALID_ARGUMENT", JSON.stringify(malformed));
  const gone = await ex([{ $obj: { bucket: "mpreg-" + cluster, name: "nothing here", size: 1, sha256: "0".repeat(64), encoding: "bytes" } }, {}]);
  assert.equal(gone.error?.code, "INVALID_ARGUMENT", JSON.stringify(gone));
});

test("a TypeScript result over the inline limit travels by reference, to Go and TypeScript steps", async (t) => {
  const loc = uniq("ts");
  const { createHash } = await import("node:crypto");
  const bytes = new Uint8Array(2 << 20).map((_, i) => i % 251); // over the NATS max payload too
  const n = await startNode(t, { id: uniq("ts-store"), locs: [loc] }, {
    bytes: () => bytes,
    text: () => ({ s: "y".repeat(300_000), $obj: "a key" }),
    measure: ([v]) => [v.s.length, v.$obj],
  });
  const resp = await rpc({
    id: uniq("store"), route_wait_ms: 5000, trace: true,
    cmds: [
      { name: "b", fun: "bytes", locs: [loc] },
      { name: "sha", fun: "sha256", args: ["b"] },
      { name: "t", fun: "text", locs: [loc] },
      { name: "m", fun: "measure", args: ["t"], locs: [loc] },
      { name: "all", fun: "echos", args: ["sha", "m"] },
    ],
  });
  assert.equal(resp.error, undefined, JSON.stringify(resp));
  assert.deepEqual(resp.results.all, [createHash("sha256").update(bytes).digest("hex"), [300_000, "a key"]]);
  assert.equal(resp.trace.find((e) => e.step === "sha").fetched_bytes, bytes.length, "the Go node fetched the TypeScript node's object");
  assert.ok(resp.trace.find((e) => e.step === "m").fetched_bytes > 300_000, "the TypeScript node fetched its own object");
  assert.equal(resp.trace.find((e) => e.step === "b").node, n.id);
});

test("a Go planner finds a TypeScript node by locs", async (t) => {
  const nodeLoc = uniq("gpu");
  const n = await startNode(t, { id: uniq("ts-locs"), locs: [nodeLoc] }, {});
  // echo is offered by the Go nodes too: only the locs send it here.
  n.register("echo", ([x]) => ({ ts: x }), { locs: ["model-a"], idempotent: true });
  const resp = await rpc({
    id: uniq("locs"), route_wait_ms: 5000, trace: true,
    cmds: [{ name: "x", fun: "echo", args: [1], locs: [nodeLoc, "model-a"] }],
  });
  assert.equal(resp.error, undefined, JSON.stringify(resp));
  assert.deepEqual(resp.results.x, { ts: 1 });
  assert.deepEqual(stepNode(resp, "x"), [n.id]);
  // The hello the planner read: effective locs, codecs, idempotent.
  const { body: hello } = await raw(`${P}.node.${n.id}.info`, undefined);
  assert.equal(hello.kind, "hello");
  assert.deepEqual(hello.funs.echo, [nodeLoc, "model-a"]);
  assert.deepEqual(hello.codecs, [MSGPACK_TYPE, JSON_TYPE]);
  assert.deepEqual(hello.idempotent, ["echo"]);
  // A loc the node lacks: not routed there.
  const none = await rpc({ id: uniq("locs"), cmds: [{ name: "x", fun: "echo", args: [1], locs: [nodeLoc, "model-b"] }] });
  assert.equal(none.error?.code, "NO_ROUTE", JSON.stringify(none));
});

test("register announces a new version with the retry policy", async (t) => {
  const n = await startNode(t, { id: uniq("ts-reg") }, {});
  const v = n.version;
  n.register("flaky", () => 1, { retry: { attempts: 3, initialBackoffMs: 50, maxBackoffMs: 1000, multiplier: 2, jitter: 0.1 } });
  assert.ok(n.version > v);
  const { body: hello } = await raw(`${P}.node.${n.id}.info`, undefined, { Accept: MSGPACK_TYPE });
  assert.equal(hello.version, n.version);
  assert.deepEqual(hello.retry, { flaky: { attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 1000, multiplier: 2, jitter: 0.1 } });
  assert.throws(() => n.register("bad", () => 1, { retry: { attempts: 0 } }), (e) => e instanceof MpregError && e.code === "INVALID_ARGUMENT");
  assert.throws(() => n.register("no.dots", () => 1), (e) => e instanceof MpregError);
});

test("a hello that would not fit a message is refused, and the node keeps the one it had", async (t) => {
  // A cluster of its own: the Go nodes need not read its big hellos.
  const solo = uniq("solo");
  const n = await startNode(t, { id: uniq("ts-big"), cluster: solo }, {});
  const locs = Array.from({ length: 63 }, (_, i) => `${i}`.padEnd(128, "l"));
  let added = 0;
  assert.throws(() => { for (;;) { n.register(`f${added}`, () => 1, { locs }); added++; } },
    (e) => e instanceof MpregError && e.code === "PAYLOAD_TOO_LARGE");
  assert.ok(added > 10 && added < 4096, `${added} functions fitted`);
  const { body: after } = await raw(`mpreg.${solo}.node.${n.id}.info`, undefined);
  assert.equal(Object.keys(after.funs).length, added);
});

test("a node refuses to start under the id of a live one", async (t) => {
  const n = await startNode(t, { id: uniq("ts-twin") }, {});
  await assert.rejects(serve({ servers, cluster, handleSignals: false, id: n.id }, {}),
    (e) => e instanceof MpregError && /in use by another process/.test(e.message));
  const { body } = await raw(`${P}.node.${n.id}.info`, undefined);
  assert.equal(body.instance, n.instance, "the first one still answers");
});

test("a cancel reaches a TypeScript step: its AbortSignal is aborted", async (t) => {
  const loc = uniq("ts");
  let started;
  const startedP = new Promise((r) => { started = r; });
  let aborted;
  const abortedP = new Promise((r) => { aborted = r; });
  await startNode(t, { id: uniq("ts-cancel"), locs: [loc] }, {
    hang: (_a, _k, { signal }) => new Promise((_resolve, reject) => {
      started();
      signal.addEventListener("abort", () => {
        aborted(signal.reason);
        reject(signal.reason);
      });
    }),
  });
  const id = uniq("cancel");
  const respP = rpc({ id, route_wait_ms: 5000, timeout_ms: 20000, cmds: [{ name: "h", fun: "hang", locs: [loc] }] });
  await startedP;
  nc.publish(`${P}.cancel`, te.encode(JSON.stringify({ id })));
  const reason = await abortedP;
  assert.equal(reason.code, "CANCELLED");
  const resp = await respP;
  assert.equal(resp.error?.code, "CANCELLED", JSON.stringify(resp));
});

test("a step's deadline aborts its signal and answers TIMEOUT", async (t) => {
  let reason;
  const n = await startNode(t, { id: uniq("ts-deadline") }, {
    hang: (_a, _k, { signal }) => new Promise((resolve) => signal.addEventListener("abort", () => { reason = signal.reason; resolve("late"); })),
  });
  const { body } = await raw(`${P}.node.${n.id}.exec`,
    te.encode(JSON.stringify({ cluster, id: "r/h", fun: "hang", deadline_ms: Date.now() + 150 })));
  assert.equal(body.error?.code, "TIMEOUT", JSON.stringify(body));
  await waitFor("the abort", () => reason !== undefined);
  assert.equal(reason.code, "TIMEOUT");
});

test("a TypeScript node killed mid-step: the Go planner fails over to another for an idempotent function", async (t) => {
  const loc = uniq("ts");
  const killedId = uniq("ts-killed");
  const script = `
    import { serve } from ${JSON.stringify(distURL)};
    await serve({ servers: ${JSON.stringify(servers)}, cluster: ${JSON.stringify(cluster)}, id: ${JSON.stringify(killedId)}, heartbeatMs: ${heartbeatMs},
      locs: [${JSON.stringify(loc)}] }, {
      // A promise nobody awaits that rejects: logged, never a crash.
      stray: () => { Promise.reject(new Error("nobody awaits this")); return "ok"; },
      work: { idempotent: true, fn: (args, kw, ctx) => {
        console.log("started " + ctx.stepKey);
        return new Promise(() => {}); // never ends: the process is killed first
      } },
    });
    console.log("serving");
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let errOut = "";
  child.stderr.on("data", (d) => { errOut += d; });
  t.after(() => child.kill("SIGKILL"));
  let out = "";
  const lines = [];
  child.stdout.on("data", (d) => {
    out += d;
    lines.push(...String(d).split("\n").filter(Boolean));
  });
  await waitFor("the child node", () => lines.includes("serving"));
  const stray = await raw(`${P}.node.${killedId}.exec`, te.encode(JSON.stringify({ cluster, id: "r/s", fun: "stray" })));
  assert.deepEqual(stray.body, { result: "ok" });

  const other = await startNode(t, { id: uniq("ts-other"), locs: [loc] }, {});
  const id = uniq("failover");
  const respP = rpc({ id, route_wait_ms: 5000, timeout_ms: 30000, trace: true, cmds: [{ name: "w", fun: "work", args: [7], locs: [loc] }] }, "json", 35_000);
  await waitFor("the step on the child", () => lines.some((l) => l.startsWith("started ")), 10_000);
  // Only now does the other node offer work: the first attempt was the child's.
  other.register("work", ([x]) => `done ${x} on ${other.id}`, { idempotent: true });
  // Every Go planner knows it before the child is lost (a dry run on each
  // planner's own subject, §4.6).
  for (const planner of goNodes) {
    await waitFor(`${planner} to know ${other.id}`, async () => {
      const m = await nc.request(`${P}.node.${planner}.rpc`,
        te.encode(JSON.stringify({ dry_run: true, cmds: [{ name: "w", fun: "work", locs: [loc] }] })), { timeout: 5000 });
      return readBody(m).plan?.[0]?.candidates?.includes(other.id);
    });
  }
  child.kill("SIGKILL");
  await once(child, "exit");
  const resp = await respP;
  assert.equal(resp.error, undefined, JSON.stringify(resp) + out);
  assert.equal(resp.results.w, `done 7 on ${other.id}`);
  assert.deepEqual(stepNode(resp, "w"), [killedId, other.id]);
  assert.equal(resp.trace[0].code, "NODE_UNAVAILABLE");
  assert.match(errOut, /unhandled promise rejection.*nobody awaits this/, "the stray rejection was logged");
});

test("a drain loses nothing: steps in flight are answered, new ones go elsewhere", async (t) => {
  const loc = uniq("ts");
  const work = async ([i]) => {
    await new Promise((r) => setTimeout(r, 200));
    return i * 2;
  };
  let ran = 0;
  const a = await serve({ servers, cluster, handleSignals: false, heartbeatMs, id: uniq("ts-drain"), locs: [loc] }, {
    work: { fn: async (args) => { ran++; return work(args); } },
  });
  const b = await startNode(t, { id: uniq("ts-stay"), locs: [loc] }, { work: { fn: work } });
  const N = 40;
  const resps = [];
  for (let i = 0; i < N; i++) {
    resps.push(rpc({ id: uniq("drain"), route_wait_ms: 5000, trace: true, cmds: [{ name: "w", fun: "work", args: [i], locs: [loc] }] }));
    if (i === N / 2) {
      await waitFor("steps on the draining node", () => a.inflight > 0);
      var drained = a.drain();
    }
  }
  const all = await Promise.all(resps);
  all.forEach((r, i) => {
    assert.equal(r.error, undefined, JSON.stringify(r));
    assert.equal(r.results.w, i * 2);
  });
  await drained;
  assert.equal(a.inflight, 0);
  assert.ok(ran > 0, "the draining node ran steps");
  assert.ok(all.some((r) => stepNode(r, "w").includes(b.id)), "the other node took steps");
  // Once it said goodbye, info answers with the goodbye, then nothing.
  await assert.rejects(raw(`${P}.node.${a.id}.info`, undefined, {}, 1000));
});

test("info answers the goodbye while draining", async (t) => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const n = await serve({ servers, cluster, handleSignals: false, heartbeatMs, id: uniq("ts-bye") }, { wait: () => gate });
  const replyP = raw(`${P}.node.${n.id}.exec`, te.encode(JSON.stringify({ cluster, id: "r/w", fun: "wait" })));
  await waitFor("the step", () => n.inflight === 1);
  const drained = n.drain();
  const { body: bye } = await raw(`${P}.node.${n.id}.info`, undefined);
  assert.deepEqual(bye, { kind: "goodbye", cluster, node: n.id, incarnation: n.incarnation, instance: n.instance });
  const mine = [];
  for await (const m of await nc.requestMany(`${P}.gossip.sync`, undefined, { maxWait: 1000 })) {
    const b = readBody(m);
    if (b.node === n.id) mine.push(b);
  }
  assert.deepEqual(mine, [bye]);
  const { body: refused } = await raw(`${P}.node.${n.id}.exec`, te.encode(JSON.stringify({ cluster, id: "r/x", fun: "wait" })));
  assert.equal(refused.error?.code, "SHUTTING_DOWN");
  release("done");
  assert.deepEqual((await replyP).body, { result: "done" });
  await drained;
});

test("a forged goodbye: the node refutes it and stays routable", async (t) => {
  const loc = uniq("ts");
  const n = await startNode(t, { id: uniq("ts-forged"), locs: [loc] }, { ping: () => "pong" });
  const call = () => rpc({ id: uniq("forged"), route_wait_ms: 5000, cmds: [{ name: "p", fun: "ping", locs: [loc] }] });
  assert.equal((await call()).results?.p, "pong");
  const h = headers();
  h.set("Content-Type", JSON_TYPE);
  for (const instance of ["forged-instance", n.instance]) {
    const v = n.version;
    nc.publish(`${P}.gossip.goodbye`, te.encode(JSON.stringify({ kind: "goodbye", cluster, node: n.id, incarnation: n.incarnation, instance })), { headers: h });
    await waitFor(`the refutation of a goodbye of instance ${instance}`, () => n.version > v);
    // Routable, at once and after: no request waits for a route.
    for (let i = 0; i < 5; i++) {
      const r = await rpc({ id: uniq("forged"), cmds: [{ name: "p", fun: "ping", locs: [loc] }] });
      assert.equal(r.results?.p, "pong", JSON.stringify(r));
    }
  }
  // A heartbeat claiming a version above the node's: refuted above it.
  nc.publish(`${P}.gossip.heartbeat`, te.encode(JSON.stringify({ cluster, node: n.id, incarnation: n.incarnation, instance: n.instance, version: 1000, seq: 1 })), { headers: h });
  await waitFor("the refutation of the heartbeat", () => n.version > 1000);
  const { body: hello } = await raw(`${P}.node.${n.id}.info`, undefined);
  assert.equal(hello.kind, "hello");
  assert.ok(hello.version > 1000);
});

test("functions: thrown errors keep their code, others are FUNCTION_ERROR, never a crash", async (t) => {
  const n = await startNode(t, { id: uniq("ts-errors") }, {
    typed: () => { throw new MpregError("INVALID_ARGUMENT", "want a string", { details: { param: "s" } }); },
    plain: () => { throw new Error("no disk"); },
    rejects: async () => { throw new TypeError("bad type"); },
    thrownString: () => { throw "just a string"; },
    cyclic: () => { const o = {}; o.self = o; return o; },
    none: () => undefined,
    literal: ([x]) => ({ keys: Object.keys(x), inner: x.$obj, back: { $obj: 1 } }),
    add: { fn: ([a, b]) => a + b, params: ["a", "b"], required: ["a", "b"] },
  });
  const ex = async (body, hdrs) => (await raw(`${P}.node.${n.id}.exec`, te.encode(JSON.stringify({ cluster, id: "r/s", ...body })), hdrs)).body;
  assert.deepEqual(await ex({ fun: "typed" }), { error: { code: "INVALID_ARGUMENT", message: "want a string", node: n.id, details: { param: "s" } } });
  assert.deepEqual(await ex({ fun: "plain" }), { error: { code: "FUNCTION_ERROR", message: "no disk", node: n.id } });
  assert.equal((await ex({ fun: "rejects" })).error.code, "FUNCTION_ERROR");
  assert.equal((await ex({ fun: "thrownString" })).error.message, "just a string");
  assert.equal((await ex({ fun: "cyclic" })).error.code, "FUNCTION_ERROR");
  assert.deepEqual(await ex({ fun: "none" }), { result: null });
  // $lit escapes (§4.7): unwrapped for the function, added on its result.
  assert.deepEqual(await ex({ fun: "literal", args: [{ $lit: { $obj: 5 } }] }), { result: { keys: ["$obj"], inner: 5, back: { $lit: { $obj: 1 } } } });
  assert.deepEqual(await ex({ fun: "add", args: [1], kwargs: { b: 2 } }), { result: 3 });
  for (const [body, param] of [[{ args: [1, 2], kwargs: { a: 3 } }, "a"], [{ args: [1], kwargs: { c: 3 } }, "c"], [{ args: [1] }, "b"]]) {
    const r = await ex({ fun: "add", ...body });
    assert.equal(r.error?.code, "INVALID_ARGUMENT", JSON.stringify(r));
    assert.equal(r.error.details.param, param);
  }
  assert.equal((await ex({ fun: "add", args: [1, 2, 3] })).error?.code, "INVALID_ARGUMENT");
  // With timing, as a tracing planner asks.
  const timed = await ex({ fun: "none", timing: true });
  assert.equal(typeof timed.timing.run_us, "number");
});

test("bad input on every subject gets a typed error or is dropped, and the node keeps serving", async (t) => {
  const n = await startNode(t, { id: uniq("ts-bad"), maxInflight: 1, maxQueue: 1 }, { echo: ([x]) => x, block: (_a, _k, { signal }) => new Promise((r) => signal.addEventListener("abort", () => r(null))) });
  const execSubj = `${P}.node.${n.id}.exec`;
  const invalid = [``, `5`, `"shout"`, `null`, `[]`, `{}`, `{"fun": "echo", "args": ["x"]}`, `{"cluster": 7, "fun": "echo"}`, `{not json`,
    `{"cluster": "a.b", "fun": "echo"}`, `{"cluster": "${"c".repeat(65)}", "fun": "echo"}`,
    `{"cluster": "${cluster}"}`, `{"cluster": "${cluster}", "fun": 5}`, `{"cluster": "${cluster}", "fun": "a b"}`,
    `{"cluster": "${cluster}", "fun": "echo", "args": "x"}`, `{"cluster": "${cluster}", "fun": "echo", "kwargs": []}`,
    `{"cluster": "${cluster}", "fun": "echo", "deadline_ms": -1}`, `{"cluster": "${cluster}", "fun": "echo", "deadline_ms": "soon"}`,
    `{"cluster": "${cluster}", "fun": "echo", "id": "${"x".repeat(1025)}"}`, `{"cluster": "${cluster}", "fun": "echo", "attempt": "${"x".repeat(129)}"}`,
    `{"cluster": "${cluster}", "fun": "echo", "args": ${"[".repeat(300)}${"]".repeat(300)}}`, `\xff\xfe`];
  for (const body of invalid) {
    const { body: r } = await raw(execSubj, te.encode(body));
    assert.equal(r.error?.code, "INVALID_REQUEST", `body ${body.slice(0, 60)}: ${JSON.stringify(r)}`);
    assert.equal(r.error.node, n.id);
  }
  // A missing or mistyped key is named (§5.2 details.key).
  assert.equal((await raw(execSubj, te.encode(`{"cluster": "${cluster}", "fun": "echo", "args": "x"}`))).body.error.details.key, "args");
  // MessagePack: with Content-Type, and bare (read by its first byte).
  const mp = mpEncode({ cluster, id: "r/m", fun: "echo", args: [new Uint8Array([1, 2, 3])] });
  const withCT = await raw(execSubj, mp, { "Content-Type": MSGPACK_TYPE });
  assert.deepEqual(new Uint8Array(withCT.body.result), new Uint8Array([1, 2, 3]));
  assert.equal(withCT.headers.get("Content-Type"), MSGPACK_TYPE);
  const bare = await raw(execSubj, mp);
  assert.deepEqual(new Uint8Array(bare.body.result), new Uint8Array([1, 2, 3]));
  assert.equal(bare.headers, undefined, "a bare request gets a bare reply");
  const badMp = await raw(execSubj, new Uint8Array([0x81, 0xc1]));
  assert.equal(badMp.body.error?.code, "INVALID_REQUEST");
  assert.equal((await raw(execSubj, new Uint8Array([0x81, 0xc1]), { "Content-Type": MSGPACK_TYPE })).body.error?.code, "INVALID_REQUEST");
  const notMap = await raw(execSubj, mpEncode([1, 2]), { "Content-Type": MSGPACK_TYPE });
  assert.equal(notMap.body.error?.code, "INVALID_REQUEST");
  // Codecs the node does not speak.
  const ct = await raw(execSubj, te.encode(`{}`), { "Content-Type": "text/xml" });
  assert.equal(ct.body.error?.code, "UNSUPPORTED_CODEC");
  assert.deepEqual(ct.body.error.details.supported, [MSGPACK_TYPE, JSON_TYPE]);
  const acc = await raw(execSubj, mp, { "Content-Type": MSGPACK_TYPE, Accept: "text/xml" });
  assert.equal(acc.body.error?.code, "UNSUPPORTED_CODEC");
  // Accept chooses the reply's codec.
  const viaAccept = await raw(execSubj, te.encode(JSON.stringify({ cluster, id: "r/a", fun: "echo", args: [1] })), { Accept: MSGPACK_TYPE });
  assert.deepEqual(viaAccept.body, { result: 1 });
  assert.equal(viaAccept.headers.get("Content-Type"), MSGPACK_TYPE);
  // An unknown function, a passed deadline.
  const noRoute = await raw(execSubj, te.encode(JSON.stringify({ cluster, id: "r/n", fun: "nope" })));
  assert.deepEqual(noRoute.body.error.details, { fun: "nope", locs: [] });
  assert.equal(noRoute.body.error.code, "NO_ROUTE");
  const late = await raw(execSubj, te.encode(JSON.stringify({ cluster, id: "r/l", fun: "echo", deadline_ms: Date.now() - 1 })));
  assert.equal(late.body.error?.code, "TIMEOUT");
  // Another cluster's exec: no reply.
  await assert.rejects(raw(execSubj, te.encode(JSON.stringify({ cluster: "other", id: "r/o", fun: "echo" })), {}, 300));

  // max_inflight 1 + max_queue 1: the third step is OVERLOADED.
  const blockBody = (i) => te.encode(JSON.stringify({ cluster, id: `r/b${i}`, attempt: `att-${i}`, fun: "block" }));
  const p1 = raw(execSubj, blockBody(1));
  const p2 = raw(execSubj, blockBody(2));
  await waitFor("two steps", () => n.inflight === 2);
  const over = await raw(execSubj, blockBody(3));
  assert.equal(over.body.error?.code, "OVERLOADED");
  assert.equal(over.body.error.details.limit, "max_queue");

  // Cancel: malformed and foreign bodies are dropped; a cancel by id when
  // the exec had an attempt finds nothing (§6.3); the right one cancels.
  const cancelSubj = `${P}.node.${n.id}.cancel`;
  for (const body of [``, `5`, `[]`, `{not json`, `{"cluster": 5, "id": "r/b1"}`, `{"cluster": "${cluster}"}`, `{"cluster": "other", "id": "r/b1", "attempt": "att-1"}`,
    `{"cluster": "${cluster}", "id": "r/b1"}`, `{"cluster": "${cluster}", "id": "r/b1", "attempt": 7}`]) {
    nc.publish(cancelSubj, te.encode(body));
  }
  nc.publish(cancelSubj, new Uint8Array([0x81, 0xc1]), { headers: (() => { const h = headers(); h.set("Content-Type", MSGPACK_TYPE); return h; })() });
  await nc.flush();
  // Info and sync read no body: garbage in them is ignored.
  const info = await raw(`${P}.node.${n.id}.info`, te.encode("{not json"), { Accept: MSGPACK_TYPE });
  assert.equal(info.body.node, n.id);
  assert.equal(info.headers.get("Content-Type"), MSGPACK_TYPE);
  assert.equal((await raw(`${P}.node.${n.id}.info`, te.encode("[]"), { Accept: "text/xml" })).body.error?.code, "UNSUPPORTED_CODEC");
  const sync = await nc.requestMany(`${P}.gossip.sync`, te.encode("\xff"), { maxWait: 1000 });
  let mine = 0;
  for await (const m of sync) if (readBody(m).node === n.id) mine++;
  assert.equal(mine, 1);
  assert.equal(n.inflight, 2, "no bad cancel stopped a step");
  nc.publish(cancelSubj, te.encode(JSON.stringify({ cluster, id: "r/b1", attempt: "att-1" })));
  nc.publish(cancelSubj, mpEncode({ cluster, id: "r/b2", attempt: "att-2" }), { headers: (() => { const h = headers(); h.set("Content-Type", MSGPACK_TYPE); return h; })() });
  assert.equal((await p1).body.error?.code, "CANCELLED");
  assert.equal((await p2).body.error?.code, "CANCELLED");

  // Still serving.
  const ok = await raw(execSubj, te.encode(JSON.stringify({ cluster, id: "r/ok", fun: "echo", args: ["still here"] })));
  assert.deepEqual(ok.body, { result: "still here" });
});
