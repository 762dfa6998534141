// The shared modules without a cluster: codecs and their choice (PROTOCOL
// §3, §6.2), the error object (§5.2), subjects (§2) and bucket names (§4.7).
import { test } from "node:test";
import assert from "node:assert/strict";

import { headers } from "@nats-io/transport-node";

import {
  bucketName,
  codecHeaders,
  decode,
  encode,
  ERROR_CODES,
  fromWireError,
  literal,
  MpregError,
  replyBodyCodec,
  replyCodec,
  requestCodec,
  subjects,
  toWireError,
  unescapeLiterals,
} from "../dist/index.js";

function hdrs(kv) {
  const h = headers();
  for (const [k, v] of Object.entries(kv)) h.set(k, v);
  return h;
}

function thrown(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail("did not throw");
}

test("both codecs round-trip the value model", () => {
  const v = { s: "x", i: -3, f: 1.5, b: true, n: null, l: [1, [2, { k: "v" }]], bin: new Uint8Array([0, 255]) };
  const m = decode("msgpack", encode("msgpack", v));
  assert.deepEqual(m, v);
  const j = decode("json", encode("json", v));
  assert.deepEqual(j, { ...v, bin: "AP8=" }, "binary is base64 in JSON");
  assert.equal(new TextDecoder().decode(encode("json", { a: 1 })), '{"a":1}');
});

test("decode refuses what does not decode, nests too deep, or is too large", () => {
  for (const [codec, body] of [
    ["json", "{not json"],
    ["json", ""],
    ["msgpack", "\xc1"],
  ]) {
    const e = thrown(() => decode(codec, Buffer.from(body, "latin1")));
    assert.ok(e instanceof MpregError);
    assert.equal(e.code, "INVALID_REQUEST", `${codec} ${JSON.stringify(body)}`);
  }
  const deep = "[".repeat(300) + "]".repeat(300);
  assert.equal(thrown(() => decode("json", Buffer.from(deep))).code, "INVALID_REQUEST");
  assert.deepEqual(decode("json", Buffer.from('["[[[[[["]')), ["[[[[[["], "brackets in strings do not count");
  let nested = [];
  for (let i = 0; i < 300; i++) nested = [nested];
  assert.equal(thrown(() => decode("msgpack", encode("msgpack", nested))).code, "INVALID_REQUEST");
  const big = encode("json", ["x".repeat(2000)]);
  const e = thrown(() => decode("json", big, { maxBytes: 1000 }));
  assert.equal(e.code, "PAYLOAD_TOO_LARGE");
  assert.equal(e.details.limit, "max_decoded_bytes");
  assert.equal(thrown(() => decode("msgpack", encode("msgpack", ["x".repeat(2000)]), { maxBytes: 1000 })).code, "PAYLOAD_TOO_LARGE");
  // An extension type other than the timestamp is refused.
  assert.equal(thrown(() => decode("msgpack", Buffer.from([0x91, 0xd4, 0x05, 0x00]))).code, "INVALID_REQUEST");
});

test("the codec of a request, its reply and a reply read (§3, §6.2)", () => {
  const mp = encode("msgpack", { a: 1 });
  const js = encode("json", { a: 1 });
  assert.equal(requestCodec(undefined, js, false), "json");
  assert.equal(requestCodec(undefined, mp, false), "json", "only bare subjects read the first byte");
  assert.equal(requestCodec(undefined, mp, true), "msgpack");
  assert.equal(requestCodec(hdrs({ Accept: "application/json" }), mp, true), "json", "a message naming a codec is not bare");
  assert.equal(requestCodec(hdrs({ "content-type": "Application/X-MsgPack; charset=utf-8" }), mp, false), "msgpack");
  assert.equal(requestCodec(hdrs({ "Content-Type": "text/json" }), js, false), "json");
  const e = thrown(() => requestCodec(hdrs({ "Content-Type": "application/cbor" }), js, false));
  assert.equal(e.code, "UNSUPPORTED_CODEC");
  assert.deepEqual(e.details.supported, ["application/msgpack", "application/json"]);

  assert.equal(replyCodec(undefined, "msgpack"), "msgpack");
  assert.equal(replyCodec(hdrs({ Accept: "*/*" }), "json"), "json");
  assert.equal(replyCodec(hdrs({ Accept: "application/vnd.msgpack" }), "json"), "msgpack");
  assert.equal(thrown(() => replyCodec(hdrs({ Accept: "text/xml" }), "json")).code, "UNSUPPORTED_CODEC");

  assert.equal(replyBodyCodec(undefined, mp), "msgpack");
  assert.equal(replyBodyCodec(undefined, js), "json");
  assert.equal(replyBodyCodec(hdrs({ "Content-Type": "application/json" }), mp), "json");
  assert.equal(thrown(() => replyBodyCodec(hdrs({ "Content-Type": "application/cbor" }), js)).code, "INTERNAL");

  assert.equal(codecHeaders("json"), undefined);
  assert.equal(codecHeaders("msgpack").get("Content-Type"), "application/msgpack");
});

test("error objects: known codes kept, unknown ones INTERNAL (§5.2)", () => {
  assert.equal(ERROR_CODES.length, 16);
  const e = fromWireError({ code: "NO_ROUTE", message: "m", step: "s", node: "n", details: { fun: "f" } });
  assert.ok(e instanceof MpregError && e instanceof Error);
  assert.deepEqual([e.code, e.message, e.step, e.node, e.details], ["NO_ROUTE", "m", "s", "n", { fun: "f" }]);
  const u = fromWireError({ code: "FROM_THE_FUTURE", message: "m", details: [1] });
  assert.equal(u.code, "INTERNAL");
  assert.deepEqual(u.details, { code: "FROM_THE_FUTURE", details: [1] });

  assert.deepEqual(toWireError(new MpregError("INVALID_ARGUMENT", "bad", { details: { param: "x" } }), "n1"), {
    code: "INVALID_ARGUMENT",
    message: "bad",
    node: "n1",
    details: { param: "x" },
  });
  assert.deepEqual(toWireError(new TypeError("oops")), { code: "FUNCTION_ERROR", message: "oops" });
  assert.deepEqual(toWireError("plain", "n2"), { code: "FUNCTION_ERROR", message: "plain", node: "n2" });
});

test("subjects and bucket names (§2, §4.7)", () => {
  const s = subjects("c1", "acme.mpreg");
  assert.equal(s.rpc, "acme.mpreg.c1.rpc");
  assert.equal(s.cancel, "acme.mpreg.c1.cancel");
  assert.equal(s.status, "acme.mpreg.c1.status");
  assert.equal(s.sync, "acme.mpreg.c1.gossip.sync");
  assert.equal(s.hello, "acme.mpreg.c1.gossip.hello");
  assert.equal(s.heartbeat, "acme.mpreg.c1.gossip.heartbeat");
  assert.equal(s.goodbye, "acme.mpreg.c1.gossip.goodbye");
  assert.equal(s.exec("n1"), "acme.mpreg.c1.node.n1.exec");
  assert.equal(s.nodeCancel("n1"), "acme.mpreg.c1.node.n1.cancel");
  assert.equal(s.info("n1"), "acme.mpreg.c1.node.n1.info");
  assert.equal(s.nodeRpc("n1"), "acme.mpreg.c1.node.n1.rpc");
  assert.equal(subjects("default").rpc, "mpreg.default.rpc");

  assert.equal(bucketName("default"), "mpreg-default");
  assert.equal(bucketName("default", "acme.mpreg"), "acme_2Empreg-default");
  const long = bucketName("c", "p".repeat(300));
  assert.equal(long.length, 251);
  assert.match(long, /^p{234}_[0-9a-f]{16}$/);
});

test("literals escape and unescape (§4.7)", () => {
  assert.deepEqual(literal({ $obj: 1 }), { $lit: { $obj: 1 } });
  assert.deepEqual(literal({ $lit: { $obj: 1 } }), { $lit: { $lit: { $lit: { $obj: 1 } } } });
  assert.deepEqual(literal({ $obj: 1, other: 2 }), { $obj: 1, other: 2 }, "other keys: an ordinary map");
  for (const v of [{ $obj: 1 }, { $lit: { $obj: 1 } }, [{ a: { $lit: 3 } }], "s", null]) {
    assert.deepEqual(unescapeLiterals(structuredClone(literal(v))), v);
  }
});
