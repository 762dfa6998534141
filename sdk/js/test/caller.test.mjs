// The caller API against a real cluster: MPREG_SERVERS names a NATS server
// with JetStream where Go nodes (MPREG_NODES) offer the demo functions
// (sdk/js/js_test.go starts them).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { connect, literal, MpregError, ERROR_CODES } from "../dist/index.js";

const servers = process.env.MPREG_SERVERS;
const cluster = process.env.MPREG_CLUSTER ?? "default";
const nodes = (process.env.MPREG_NODES ?? "").split(",").filter(Boolean).sort();
if (!servers) throw new Error("MPREG_SERVERS is not set: run through `go test ./sdk/js/`");

/** The error a promise rejects with; fails when it resolves. */
async function rejection(p) {
  try {
    const v = await p;
    assert.fail(`resolved with ${JSON.stringify(v)}, want an error`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

function sha256(b) {
  return createHash("sha256").update(b).digest("hex");
}

for (const codec of ["json", "msgpack"]) {
  describe(`call and run, ${codec}`, () => {
    let c;
    before(async () => {
      c = await connect({ servers, cluster, codec });
    });
    after(async () => {
      await c.close();
    });

    test("call returns the value", async () => {
      assert.equal(await c.call("echo", ["hi"]), "hi");
      assert.equal(await c.call("add", [2, 3]), 5);
      assert.equal(await c.call("add", [], { kwargs: { a: 1.5, b: 1 } }), 2.5);
      assert.deepEqual(await c.call("echo", [{ a: [1, "two", null, true], b: { c: -7 } }]), {
        a: [1, "two", null, true],
        b: { c: -7 },
      });
      assert.ok(nodes.includes(await c.call("whoami")), "runs on one of the nodes");
    });

    test("run returns the response", async () => {
      const resp = await c.run(
        [
          { name: "|first", fun: "upper", args: ["hi there"] },
          { name: "|second", fun: "echos", args: ["|first", { $ref: "|first" }, "and me"] },
        ],
        { results: "all", id: `run-${codec}` },
      );
      assert.equal(resp.id, `run-${codec}`);
      assert.deepEqual(resp.results, { "|first": "HI THERE", "|second": ["HI THERE", "HI THERE", "and me"] });
      assert.equal(resp.error, undefined);
    });

    test("a literal map that looks like a reference travels as itself", async () => {
      assert.deepEqual(await c.call("echo", [literal({ $obj: 1 })]), { $obj: 1 });
      assert.deepEqual(await c.call("echo", [literal({ $lit: { $obj: 2 } })]), { $lit: { $obj: 2 } });
    });

    test("errors are MpregError with code, step and details", async () => {
      let e = await rejection(c.call("nowhere", [1]));
      assert.ok(e instanceof MpregError);
      assert.equal(e.code, "NO_ROUTE");
      assert.equal(e.step, "call");
      assert.deepEqual(e.details, { fun: "nowhere", locs: [] });

      e = await rejection(c.call("add", ["x", 1]));
      assert.equal(e.code, "INVALID_ARGUMENT");
      assert.equal(e.details.param, "a");
      assert.ok(nodes.includes(e.node), `node ${e.node}`);

      e = await rejection(c.call("fail", ["boom"]));
      assert.equal(e.code, "FUNCTION_ERROR");
      assert.equal(e.message, "boom");

      e = await rejection(c.call("sleep", [5000, "late"], { timeoutMs: 300 }));
      assert.equal(e.code, "TIMEOUT");

      e = await rejection(
        c.run([
          { name: "a", fun: "echo", args: [{ $ref: "b" }] },
          { name: "b", fun: "echo", args: [{ $ref: "a" }] },
        ]),
      );
      assert.equal(e.code, "INVALID_REQUEST");
      assert.deepEqual(e.details.cycle, ["a", "b"]);

      e = await rejection(c.run([{ name: "x", fun: "echo" }, { name: "x", fun: "echo" }]));
      assert.equal(e.code, "INVALID_REQUEST");
      assert.ok(ERROR_CODES.includes(e.code));
    });

    test("a failed request keeps its partial results on the error", async () => {
      const e = await rejection(
        c.run([
          { name: "msg", fun: "echo", args: ["disk full"] },
          { name: "bad", fun: "fail", args: ["msg"] },
        ]),
      );
      assert.equal(e.code, "FUNCTION_ERROR");
      assert.equal(e.step, "bad");
      assert.equal(e.message, "disk full");
      assert.deepEqual(e.response.results, { msg: "disk full" }, "the input of the step that failed");
    });

    test("on_error continue gives the errors of each step", async () => {
      const resp = await c.run(
        [
          { name: "good", fun: "add", args: [2, 3] },
          { name: "bad", fun: "fail", args: ["no disk"] },
          { name: "after", fun: "echo", args: ["bad"] },
        ],
        { onError: "continue" },
      );
      assert.deepEqual(resp.results, { good: 5 });
      assert.equal(resp.errors.bad.code, "FUNCTION_ERROR");
      assert.equal(resp.errors.after.code, "CANCELLED");
      assert.equal(resp.errors.after.details.cause, "bad");
    });
  });
}

describe("requests", () => {
  let c;
  before(async () => {
    c = await connect({ servers, cluster, codec: "msgpack" });
  });
  after(async () => {
    await c.close();
  });

  test("stream with progress: planned, a step per attempt in order, then the result", async () => {
    const events = [];
    for await (const ev of c.stream(
      [
        { name: "nap", fun: "sleep", args: [100, "rested"] },
        { name: "loud", fun: "upper", args: ["nap"] },
      ],
      { progress: true, id: "stream-1" },
    )) {
      events.push(ev);
    }
    assert.deepEqual(
      events.map((e) => e.type),
      ["planned", "step", "step", "result"],
    );
    assert.equal(events[0].planned.id, "stream-1");
    assert.equal(events[0].planned.steps, 2);
    assert.ok(nodes.includes(events[0].planned.planner));
    assert.deepEqual(
      events.slice(1, 3).map((e) => [e.step.step, e.step.code, e.step.attempt]),
      [
        ["nap", "ok", 1],
        ["loud", "ok", 1],
      ],
    );
    assert.ok(events[1].step.run_us >= 100_000, `nap ran ${events[1].step.run_us} µs`);
    assert.deepEqual(events[3].response.results, { loud: "RESTED" });
  });

  test("cancel stops a long sleep: CANCELLED, and the planner says it stopped it", async () => {
    const started = Date.now();
    const events = [];
    for await (const ev of c.stream([{ name: "long", fun: "sleep", args: [20_000, "never"] }], {
      progress: true,
      id: "cancel-me",
    })) {
      events.push(ev);
      if (ev.type === "planned") {
        const stopped = await c.cancel("cancel-me");
        assert.deepEqual(stopped, [ev.planned.planner], "the planner answers the cancel");
      }
    }
    const last = events.at(-1);
    assert.equal(last.type, "result");
    assert.equal(last.response.error.code, "CANCELLED");
    assert.ok(Date.now() - started < 10_000, "the sleep did not run to its end");

    const ac = new AbortController();
    const p = c.run([{ name: "long", fun: "sleep", args: [20_000, "never"] }], { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    let e = await rejection(p);
    assert.equal(e.code, "CANCELLED");

    const ac2 = new AbortController();
    const q = c.call("sleep", [20_000, "never"], { signal: ac2.signal });
    setTimeout(() => ac2.abort(), 200);
    e = await rejection(q);
    assert.equal(e.code, "CANCELLED");
    assert.equal(e.step, "call");
    assert.ok(Date.now() - started < 10_000, "the sleeps did not run to their end");
  });

  test("a cancel of an id nobody runs stops nothing", async () => {
    assert.deepEqual(await c.cancel("no-such-request", { waitMs: 200 }), []);
  });

  test("dry run plans and runs nothing", async () => {
    const resp = await c.run(
      [
        { name: "x", fun: "tally", args: ["dry"] },
        { name: "z", fun: "nowhere", args: ["x"] },
      ],
      { dryRun: true },
    );
    assert.deepEqual(resp.results, {});
    assert.equal(resp.error, undefined);
    assert.equal(resp.plan.length, 2);
    assert.deepEqual(resp.plan[0].candidates, nodes);
    assert.equal(resp.plan[0].routable, true);
    assert.deepEqual(resp.plan[1].deps, ["x"]);
    assert.equal(resp.plan[1].routable, false);
    assert.equal(resp.problems[0].code, "NO_ROUTE");
    assert.equal(resp.problems[0].step, "z");
    // tally counts its calls on each node: the dry run did not run it.
    assert.equal(await c.call("tally", ["dry"]), 1);
  });

  test("trace: one entry per step attempt", async () => {
    const resp = await c.run(
      [
        { name: "a", fun: "echo", args: [1] },
        { name: "b", fun: "add", args: ["a", 2] },
      ],
      { trace: true },
    );
    assert.deepEqual(resp.results, { b: 3 });
    assert.deepEqual(
      resp.trace.map((e) => [e.step, e.fun, e.attempt, e.code]),
      [
        ["a", "echo", 1, "ok"],
        ["b", "add", 1, "ok"],
      ],
    );
    for (const e of resp.trace) assert.ok(nodes.includes(e.node));
  });

  test("durable: submit, status, get with wait", async () => {
    const id = `durable-${Date.now()}`;
    const req = {
      id,
      cmds: [
        { name: "nap", fun: "sleep", args: [300, "slept"] },
        { name: "shout", fun: "upper", args: ["nap"] },
      ],
    };
    const st = await c.submit(req);
    assert.equal(st.id, id);
    assert.ok(["accepted", "running"].includes(st.status), st.status);
    assert.equal(st.steps, 2);

    const now = await c.status(id);
    assert.ok(["accepted", "running", "done"].includes(now.status), now.status);

    const resp = await c.get(id, { wait: true, timeoutMs: 20_000 });
    assert.deepEqual(resp.results, { shout: "SLEPT" });
    const done = await c.status(id);
    assert.equal(done.status, "done");
    assert.equal(done.steps_done, 2);
    assert.ok(nodes.includes(done.planner));

    // The same id again is not run again: its status is the existing one's.
    assert.equal((await c.submit(req)).status, "done");
    const e = await rejection(c.get("durable-nobody-sent"));
    assert.equal(e.code, "INVALID_REQUEST");
    assert.equal(e.details.id, "durable-nobody-sent");
  });

  test("a response larger than a message comes in parts, merged into it (§5.3)", async () => {
    // Six results of 200 kB each: each travels inline, together they pass
    // the 1 MiB max payload.
    const cmds = Array.from({ length: 6 }, (_, i) => ({ name: `b${i}`, fun: "blob", args: [200_000, i] }));
    const types = [];
    let resp;
    for await (const ev of c.stream(cmds)) {
      types.push(ev.type);
      if (ev.type === "result") resp = ev.response;
    }
    assert.ok(types.filter((t) => t === "part").length >= 1, `events ${types}`);
    assert.equal(types.at(-1), "result");
    assert.deepEqual(Object.keys(resp.results).sort(), ["b0", "b1", "b2", "b3", "b4", "b5"]);
    for (let i = 0; i < 6; i++) {
      const b = resp.results[`b${i}`];
      assert.ok(b instanceof Uint8Array && b.length === 200_000);
      assert.equal(b[1], (31 + i) % 251, "blob's pattern: byte i is (i*31 + seed) mod 251");
    }
    const again = await c.run(cmds);
    assert.equal(Object.keys(again.results).length, 6);

    // A client that keeps less than the parts refuses the response.
    const small = await connect({ servers, cluster, codec: "msgpack", maxResultBytes: 500_000 });
    try {
      const e = await rejection(small.run(cmds));
      assert.equal(e.code, "PAYLOAD_TOO_LARGE");
      assert.equal(e.details.limit, "max_result_bytes");
    } finally {
      await small.close();
    }
  });

  test("durable run waits for the response", async () => {
    const resp = await c.run([{ name: "x", fun: "echo", args: ["kept"] }], { durable: true, id: `durable-run-${Date.now()}` });
    assert.deepEqual(resp.results, { x: "kept" });
  });
});

describe("planners", () => {
  let c;
  before(async () => {
    c = await connect({ servers, cluster });
  });
  after(async () => {
    await c.close();
  });

  test("a request for a planner that does not answer goes to any planner (§4.6)", async () => {
    const resp = await c.run([{ name: "x", fun: "upper", args: ["any"] }], { planner: "no-such-node" });
    assert.deepEqual(resp.results, { x: "ANY" });
    const events = [];
    for await (const ev of c.stream([{ name: "x", fun: "sleep", args: [50, "y"] }], { planner: nodes[1], progress: true })) {
      events.push(ev);
    }
    assert.equal(events[0].planned.planner, nodes[1], "planned where asked");
  });

  test("a planner killed mid-request ends it NODE_UNAVAILABLE, not at its budget (§4.4)", async (t) => {
    const bin = process.env.MPREG_BIN;
    assert.ok(bin, "MPREG_BIN names a built mpreg");
    const victim = spawn(bin, ["node", "--servers", servers, "--cluster", cluster, "--node-id", "js-victim", "--locs", "victim", "--demo"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    victim.stderr.on("data", (b) => (log += b));
    const exited = once(victim, "exit");
    t.after(async () => {
      if (victim.exitCode === null && victim.signalCode === null) {
        victim.kill("SIGKILL");
        await exited;
      }
    });

    // Wait, within a deadline, until it plans what is sent to it and runs
    // its own steps.
    const deadline = Date.now() + 20_000;
    for (;;) {
      let planner;
      for await (const ev of c.stream([{ name: "w", fun: "whoami", locs: ["victim"] }], { planner: "js-victim", progress: true, timeoutMs: 2000 })) {
        if (ev.type === "planned") planner = ev.planned.planner;
        if (ev.type === "result" && planner === "js-victim" && ev.response.results.w === "js-victim") break;
      }
      if (planner === "js-victim") break;
      assert.ok(Date.now() < deadline, `js-victim does not plan: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const started = Date.now();
    const e = await rejection(
      (async () => {
        for await (const ev of c.stream([{ name: "long", fun: "sleep", args: [60_000, "never"], locs: ["victim"] }], {
          planner: "js-victim",
          progress: true,
          timeoutMs: 60_000,
        })) {
          if (ev.type === "planned") {
            assert.equal(ev.planned.planner, "js-victim");
            victim.kill("SIGKILL");
          }
        }
      })(),
    );
    assert.equal(e.code, "NODE_UNAVAILABLE", e.message);
    assert.equal(e.details.planner, "js-victim");
    const took = Date.now() - started;
    assert.ok(took < 15_000, `noticed after ${took} ms`);
  });
});

describe("values by reference", () => {
  for (const codec of ["json", "msgpack"]) {
    test(`a 1 MiB blob comes back resolved from its reference, ${codec}`, async () => {
      const c = await connect({ servers, cluster, codec });
      try {
        const size = 1 << 20;
        const [blob, resp] = await Promise.all([
          c.call("blob", [size, 7]),
          c.run(
            [
              { name: "data", fun: "blob", args: [size, 7] },
              { name: "sum", fun: "sha256", args: ["data"] },
            ],
            {},
          ),
        ]);
        assert.ok(blob instanceof Uint8Array);
        assert.equal(blob.length, size);
        assert.equal(sha256(blob), resp.results.sum, "the bytes the Go node hashed");

        const raw = await c.call("blob", [size, 7], { keepRefs: true });
        assert.deepEqual(Object.keys(raw), ["$obj"]);
        assert.equal(raw.$obj.bucket, `mpreg-${cluster}`);
        assert.equal(raw.$obj.size, size);
        assert.equal(raw.$obj.encoding, "bytes");
        assert.equal(raw.$obj.sha256, resp.results.sum);
        // A reference passed back as an argument is read by the node.
        assert.equal(await c.call("length", [raw]), size);
      } finally {
        await c.close();
      }
    });
  }

  test("a reference is checked before it is used", async () => {
    const c = await connect({ servers, cluster });
    try {
      const ref = await c.call("blob", [300_000, 3], { keepRefs: true });
      const good = await c.resolveRefs(structuredClone(ref));
      assert.equal(good.length, 300_000);
      assert.equal(sha256(good), ref.$obj.sha256);

      let e = await rejection(c.resolveRefs({ $obj: { ...ref.$obj, sha256: "0".repeat(64) } }));
      assert.equal(e.code, "INTERNAL", e.message);
      assert.equal(e.details.name, ref.$obj.name);
      assert.ok(nodes.includes(e.details.stored_by), `stored by ${e.details.stored_by}, from the object's metadata`);

      e = await rejection(c.resolveRefs({ $obj: { ...ref.$obj, bucket: "another-bucket" } }));
      assert.equal(e.code, "PERMISSION_DENIED");
      assert.deepEqual(e.details, { bucket: "another-bucket", name: ref.$obj.name });

      e = await rejection(c.resolveRefs({ $obj: { ...ref.$obj, name: "no-such-object" } }));
      assert.equal(e.code, "INVALID_ARGUMENT");
      assert.deepEqual(e.details, { bucket: `mpreg-${cluster}`, name: "no-such-object" });

      e = await rejection(c.resolveRefs({ $obj: { ...ref.$obj, size: "big" } }));
      assert.equal(e.code, "INVALID_ARGUMENT");

      // Past the client's maxResultBytes nothing is fetched.
      const small = await connect({ servers, cluster, maxResultBytes: 100_000 });
      try {
        e = await rejection(small.resolveRefs(structuredClone(ref)));
        assert.equal(e.code, "PAYLOAD_TOO_LARGE");
      } finally {
        await small.close();
      }
    } finally {
      await c.close();
    }
  });
});

