// Serves a function to an MPREG cluster from JavaScript, as a node, with the
// plain nats.js client and docs/PROTOCOL.md alone: it answers exec, info and
// sync, announces itself with hello, heartbeats, and says goodbye on exit.
//
//   MPREG_SERVERS=nats://127.0.0.1:4222 node node.mjs
// offers shout(s) (upper case plus "!") with loc "js", and a retry policy
// for it.
import { connect, headers } from "nats";

const servers = (process.env.MPREG_SERVERS || "nats://127.0.0.1:4222").split(",");
const cluster = process.env.MPREG_CLUSTER || "default";
const id = process.env.MPREG_NODE_ID || "js-1";
const P = `mpreg.${cluster}`;

const functions = {
  shout: (args, kwargs) => {
    const s = args.length > 0 ? args[0] : kwargs.s;
    if (typeof s !== "string") {
      throw { code: "INVALID_ARGUMENT", message: "shout: s: want string" };
    }
    return s.toUpperCase() + "!";
  },
};

const incarnation = Date.now();
// A random nonce of this process: two started in the same millisecond
// under one id are told apart.
const instance = Math.random().toString(36).slice(2, 14);
let version = 1;
let gone = false; // said goodbye: sync and info answer with it from then on
let seq = 0;
let inflight = 0;

const goodbye = () => ({ kind: "goodbye", cluster, node: id, incarnation, instance });
const hello = () => gone ? goodbye() : ({ kind: "hello",
  cluster, node: id, incarnation, instance, version,
  funs: { shout: ["js"] },
  codecs: ["application/json"],
  advertised_urls: servers,
  meta: { name: "javascript example" },
  proto: 1,
  // A planner tries a step of shout that failed (FUNCTION_ERROR,
  // FUNCTION_PANIC, NODE_UNAVAILABLE, a TIMEOUT of the step) again: 3
  // attempts in all, 50 ms then 100 ms later, give or take 10%.
  retry: { shout: { attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 1000, multiplier: 2, jitter: 0.1 } },
});

const jsonHeaders = () => {
  const h = headers();
  h.set("Content-Type", "application/json");
  return h;
};
const encode = (v) => JSON.stringify(v);
const decode = (m) => (m.data.length ? JSON.parse(new TextDecoder().decode(m.data)) : {});

const nc = await connect({ servers });

// run runs the step req asks for and returns the exec reply.
const run = (req) => {
  const fn = Object.hasOwn(functions, req.fun) ? functions[req.fun] : undefined;
  if (!fn) {
    return { error: { code: "NO_ROUTE", message: `node ${id} does not offer that function`, node: id,
      details: { fun: String(req.fun).slice(0, 128), locs: [] } } };
  }
  if (req.deadline_ms && Date.now() > req.deadline_ms) {
    return { error: { code: "TIMEOUT", message: "the step's deadline passed", node: id } };
  }
  inflight++;
  try {
    return { result: fn(req.args || [], req.kwargs || {}) };
  } catch (e) {
    return { error: { code: e.code || "FUNCTION_ERROR", message: e.message || String(e), node: id } };
  } finally {
    inflight--;
  }
};

// respond answers m with the JSON of v and never throws: whatever a caller
// sends, the node keeps serving. A reply that cannot be sent is replaced by
// an error that can (PROTOCOL.md §5.2); if even that fails, it is logged.
const respond = (m, v) => {
  let body;
  try {
    body = new TextEncoder().encode(encode(v));
    m.respond(body, { headers: jsonHeaders() });
    return;
  } catch (e) {
    v = { error: replyError(e, body) };
  }
  try {
    m.respond(encode(v), { headers: jsonHeaders() });
  } catch (e) {
    console.error(`node ${id}: reply not sent: ${e.message || e}`);
  }
};

// replyError is why a reply body (undefined if it did not encode) was not
// sent.
const replyError = (e, body) => {
  const max = nc.info?.max_payload;
  if (e.code === "MAX_PAYLOAD_EXCEEDED") {
    return { code: "PAYLOAD_TOO_LARGE", message: `a reply of ${body.length} bytes exceeds the NATS max payload of ${max} bytes`,
      node: id, details: { limit: "max_payload", size: body.length, max } };
  }
  if (body === undefined) { // JSON.stringify refused it: a BigInt, a cycle
    return { code: "FUNCTION_ERROR", message: `the result does not encode as JSON: ${e.message || e}`, node: id };
  }
  return { code: "INTERNAL", message: `the reply cannot be sent: ${e.message || e}`, node: id };
};

const invalid = (message) => ({ error: { code: "INVALID_REQUEST", message, node: id } });

// exec: run one step and reply {"result": ...} or {"error": {...}}.
nc.subscribe(`${P}.node.${id}.exec`, {
  callback: (err, m) => {
    if (err) return;
    // This node reads JSON only (its hello lists only JSON); say so to a
    // caller that sends anything else.
    const ct = (m.headers && m.headers.get("Content-Type")) || "application/json";
    if (!ct.toLowerCase().startsWith("application/json")) {
      respond(m, { error: { code: "UNSUPPORTED_CODEC", message: "this node reads JSON only",
        details: { supported: ["application/json"] } } });
      return;
    }
    let req;
    try {
      req = decode(m);
    } catch (e) {
      respond(m, invalid(`body does not decode: ${e}`));
      return;
    }
    if (typeof req !== "object" || req === null || Array.isArray(req) || typeof req.cluster !== "string") {
      respond(m, invalid("the body must be an object with cluster"));
      return;
    }
    if (req.cluster !== cluster) return; // another cluster: drop, no reply
    respond(m, run(req));
  },
});

// info and sync: reply with this node's hello (its goodbye once leaving,
// so that peers that check a goodbye with the node believe it).
for (const subject of [`${P}.node.${id}.info`, `${P}.gossip.sync`]) {
  nc.subscribe(subject, { callback: (err, m) => { if (!err) respond(m, hello()); } });
}

// A cancel names a step this node runs; shout is instant, so there is
// nothing to stop (a real node would abort the step's work here).
nc.subscribe(`${P}.node.${id}.cancel`, { callback: () => {} });

nc.publish(`${P}.gossip.hello`, encode(hello()), { headers: jsonHeaders() });
const beat = () => nc.publish(`${P}.gossip.heartbeat`,
  encode({ cluster, node: id, incarnation, instance, version, seq: ++seq, load: { inflight, limit: 64 } }),
  { headers: jsonHeaders() });
beat();
const timer = setInterval(beat, 1000);
await nc.flush();
console.log(`node ${id} serving shout on cluster ${cluster}`);

const stop = async () => {
  // Say goodbye (and answer info and sync with it), then stop: heartbeats
  // go on until the connection drains, as steps may still be running.
  gone = true;
  nc.publish(`${P}.gossip.goodbye`, encode(goodbye()), { headers: jsonHeaders() });
  await nc.flush();
  clearInterval(timer);
  await nc.drain();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
