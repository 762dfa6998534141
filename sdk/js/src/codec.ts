// The two codecs of docs/PROTOCOL.md §3 and the choice between them.

import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";
import { headers as natsHeaders, Match, type MsgHdrs } from "@nats-io/transport-node";

import { MpregError } from "./errors.js";

export type CodecName = "json" | "msgpack";
export const JSON_TYPE = "application/json";
export const MSGPACK_TYPE = "application/msgpack";

/** The media types this package reads, in its order of preference (hello.codecs). */
export const SUPPORTED_TYPES: readonly string[] = Object.freeze([MSGPACK_TYPE, JSON_TYPE]);

/** The bounds of §3: nesting of a decoded body and its memory (max_decoded_bytes). */
export const MAX_BODY_DEPTH = 256;
export const MAX_DECODED_BYTES = 32 * 1024 * 1024;

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true, maxDepth: 2 * MAX_BODY_DEPTH });

const utf8 = new TextDecoder("utf-8", { fatal: true });
const textEncoder = new TextEncoder();

const decoder = new Decoder({
  useBigInt64: false,
  mapKeyConverter: (key: unknown): string | number => {
    if (typeof key === "string") return key;
    if (typeof key === "number" || typeof key === "bigint") return String(key);
    if (key instanceof Uint8Array) return utf8.decode(key); // throws if not UTF-8
    throw new MpregError("INVALID_REQUEST", `map key of type ${typeof key}`);
  },
});

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

function jsonReplacer(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key];
  if (raw instanceof Uint8Array) return base64(raw);
  if (typeof value === "bigint") return Number(value);
  return value;
}

/**
 * A value in the codec: binary values (Uint8Array) are MessagePack bin and
 * base64 strings in JSON (§3). JSON cannot tell 1.0 from 1, nor MessagePack
 * from JavaScript numbers: an integral number is sent as an integer.
 */
export function encode(codec: CodecName, value: unknown): Uint8Array {
  if (codec === "msgpack") return encoder.encode(value);
  return textEncoder.encode(JSON.stringify(value, jsonReplacer));
}

/**
 * The value of a body in the codec, bounded as §3 says: at most maxDepth
 * levels of nesting (256; INVALID_REQUEST past it) and maxBytes of memory as
 * estimated from its structure (32 MiB; PAYLOAD_TOO_LARGE, details.limit
 * "max_decoded_bytes"). A body that does not decode is INVALID_REQUEST.
 * MessagePack timestamps become RFC 3339 strings, other extension types are
 * refused, integer and binary map keys become strings.
 */
export function decode(
  codec: CodecName,
  data: Uint8Array,
  limits?: { maxDepth?: number; maxBytes?: number },
): unknown {
  const maxDepth = limits?.maxDepth ?? MAX_BODY_DEPTH;
  const maxBytes = limits?.maxBytes ?? MAX_DECODED_BYTES;
  if (codec === "json") return decodeJSON(data, maxDepth, maxBytes);
  return decodeMsgpack(data, maxDepth, maxBytes);
}

function tooLarge(size: number, maxBytes: number): MpregError {
  return new MpregError(
    "PAYLOAD_TOO_LARGE",
    `body decodes past the limit max_decoded_bytes=${maxBytes}`,
    { details: { limit: "max_decoded_bytes", max: maxBytes, size } },
  );
}

function tooDeep(maxDepth: number): MpregError {
  return new MpregError("INVALID_REQUEST", `body nests deeper than ${maxDepth} levels`, {
    details: { limit: "max_depth", max: maxDepth },
  });
}

function decodeJSON(data: Uint8Array, maxDepth: number, maxBytes: number): unknown {
  // A JSON body is measured before it is decoded (§3).
  if (data.byteLength > maxBytes) throw tooLarge(data.byteLength, maxBytes);
  if (jsonDepth(data) > maxDepth + 1) throw tooDeep(maxDepth);
  let text: string;
  try {
    text = utf8.decode(data);
  } catch (e) {
    throw new MpregError("INVALID_REQUEST", "body is not UTF-8", { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MpregError("INVALID_REQUEST", `body does not decode as JSON: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** The deepest nesting of [ and { in a JSON text, strings skipped. */
function jsonDepth(data: Uint8Array): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

function decodeMsgpack(data: Uint8Array, maxDepth: number, maxBytes: number): unknown {
  let v: unknown;
  try {
    v = decoder.decode(data);
  } catch (e) {
    if (e instanceof MpregError) throw e;
    throw new MpregError("INVALID_REQUEST", `body does not decode as MessagePack: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const budget = { left: maxBytes };
  const out = checkMsgpack(v, 0, maxDepth, budget);
  if (budget.left < 0) throw tooLarge(maxBytes - budget.left, maxBytes);
  return out;
}

/** Walks a decoded MessagePack value: depth, memory, extension types. */
function checkMsgpack(v: unknown, depth: number, maxDepth: number, budget: { left: number }): unknown {
  if (depth > maxDepth) throw tooDeep(maxDepth);
  if (v === null || typeof v !== "object") {
    budget.left -= typeof v === "string" ? v.length + 16 : 16;
    return v;
  }
  if (v instanceof Uint8Array) {
    budget.left -= v.byteLength + 16;
    return v;
  }
  if (v instanceof Date) {
    budget.left -= 32;
    return v.toISOString();
  }
  if (v instanceof ExtData) {
    throw new MpregError("INVALID_REQUEST", `MessagePack extension type ${v.type} is not allowed`);
  }
  if (budget.left < 0) return v;
  if (Array.isArray(v)) {
    budget.left -= 24;
    for (let i = 0; i < v.length; i++) v[i] = checkMsgpack(v[i], depth + 1, maxDepth, budget);
    return v;
  }
  const o = v as Record<string, unknown>;
  budget.left -= 48;
  for (const k of Object.keys(o)) {
    budget.left -= k.length + 16;
    o[k] = checkMsgpack(o[k], depth + 1, maxDepth, budget);
  }
  return v;
}

/** The codec a media type names (parameters ignored, any case), or undefined. */
export function codecOfType(mediaType: string): CodecName | undefined {
  const t = mediaType.split(";")[0]!.trim().toLowerCase();
  switch (t) {
    case "application/json":
    case "text/json":
      return "json";
    case "application/msgpack":
    case "application/x-msgpack":
    case "application/vnd.msgpack":
      return "msgpack";
    default:
      return undefined;
  }
}

/** Whether a body's first byte opens a MessagePack map (0x80–0x8f, 0xde, 0xdf). */
export function opensMsgpackMap(data: Uint8Array): boolean {
  if (data.length === 0) return false;
  const b = data[0]!;
  return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
}

function header(h: MsgHdrs | undefined, key: string): string {
  if (!h) return "";
  return h.get(key, Match.IgnoreCase) ?? "";
}

function unsupported(what: string, t: string): MpregError {
  return new MpregError("UNSUPPORTED_CODEC", `${what} ${JSON.stringify(t)} is not a codec this node speaks`, {
    details: { supported: [...SUPPORTED_TYPES] },
  });
}

/**
 * The codec of a request (§3): its Content-Type; without one, JSON, except
 * that with bareAllowed (a node's exec and node rpc subjects when its hello
 * has `bare`, §6.2) a message naming no codec (no Content-Type, no Accept)
 * whose first byte opens a MessagePack map is MessagePack. A Content-Type
 * this package does not speak throws UNSUPPORTED_CODEC (details.supported).
 */
export function requestCodec(headers: MsgHdrs | undefined, data: Uint8Array, bareAllowed: boolean): CodecName {
  const ct = header(headers, "Content-Type");
  if (ct !== "") {
    const c = codecOfType(ct);
    if (!c) throw unsupported("Content-Type", ct);
    return c;
  }
  if (bareAllowed && header(headers, "Accept") === "" && opensMsgpackMap(data)) return "msgpack";
  return "json";
}

/**
 * The codec of the reply (§3): the request's Accept, when it names one;
 * absent, empty, `*∕*` or `application/*`: the request's codec. An Accept
 * this package does not speak throws UNSUPPORTED_CODEC.
 */
export function replyCodec(headers: MsgHdrs | undefined, requestCodec: CodecName): CodecName {
  const a = header(headers, "Accept").split(";")[0]!.trim().toLowerCase();
  if (a === "" || a === "*/*" || a === "application/*") return requestCodec;
  const c = codecOfType(a);
  if (!c) throw unsupported("Accept", a);
  return c;
}

/**
 * The codec of a reply or event read (§3): its Content-Type; without one,
 * MessagePack when the first byte opens a MessagePack map, else JSON. A
 * Content-Type this package does not speak is INTERNAL (the sender's fault).
 */
export function replyBodyCodec(headers: MsgHdrs | undefined, data: Uint8Array): CodecName {
  const ct = header(headers, "Content-Type");
  if (ct !== "") {
    const c = codecOfType(ct);
    if (!c) throw new MpregError("INTERNAL", `reply in unknown codec ${JSON.stringify(ct)}`);
    return c;
  }
  return opensMsgpackMap(data) ? "msgpack" : "json";
}

/** Headers naming the codec: Content-Type for MessagePack, none for JSON (§3). */
export function codecHeaders(codec: CodecName): MsgHdrs | undefined {
  if (codec === "json") return undefined;
  const h = natsHeaders();
  h.set("Content-Type", MSGPACK_TYPE);
  return h;
}
