// A node of an MPREG cluster: it serves functions to the cluster's planners
// as docs/PROTOCOL.md §6–§7 ask (exec, cancel, hello, heartbeat, goodbye,
// info, sync, the refutation of claims about itself) within the bounds of
// §10.
import { hostname } from "node:os";
import { createHash, randomBytes } from "node:crypto";
import {
  connect as natsConnect,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
  type Subscription,
} from "@nats-io/transport-node";
import { MpregError, toWireError, type ErrorCode, type WireError } from "./errors.js";
import { decode, encode, JSON_TYPE, MSGPACK_TYPE, requestCodec, replyCodec, type CodecName } from "./codec.js";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { bucketName, subjects, type ObjRef } from "./wire.js";
import { unescapeLiterals } from "./caller.js";

/** The version of this package, announced in `hello.meta.mpreg`. */
const PACKAGE_VERSION = "0.1.0";

/** What a function gets besides its arguments. */
export interface StepContext {
  /** Aborted at the step's deadline (reason: an MpregError TIMEOUT), on a
   * cancel of the step (§6.3, CANCELLED) and when the node stops while the
   * step runs (NODE_UNAVAILABLE). */
  signal: AbortSignal;
  /** The step's idempotency key, `<request id>/<step name>` (the exec id):
   * the same on every attempt of the step. */
  stepKey: string;
  /** The step's deadline, unix milliseconds. */
  deadline: number;
  /** The attempt the planner named, when it named one. */
  attempt?: string;
}

/** A function served by a node. Its value (or the value its promise
 * resolves to) is the step's result; `undefined` is sent as null. A thrown
 * {@link MpregError} keeps its code; anything else thrown is
 * FUNCTION_ERROR with its message. */
export type NodeFunction = (
  args: unknown[],
  kwargs: Record<string, unknown>,
  ctx: StepContext,
) => unknown | Promise<unknown>;

/** A retry policy (§7.1 `retry`): planners try a step of the function that
 * failed on this node again, `attempts` attempts in all. */
export interface RetryOptions {
  attempts: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  multiplier?: number;
  jitter?: number;
}

/** How a function is registered. */
export interface FunctionOptions {
  /** Names of the positional parameters. With them a function also takes
   * keyword arguments: each kwarg fills the position of its name, and the
   * function gets every argument in `args` (and `{}` in `kwargs`), as a Go
   * node's `WithParams` binds them. A kwarg naming no parameter, or one
   * given positionally too, or more positional arguments than parameters,
   * is INVALID_ARGUMENT (`details.param`). Without `params` the function
   * gets `args` and `kwargs` as sent. */
  params?: string[];
  /** Parameters that must be given (positionally or by name); others left
   * out are `undefined`. Only with `params`. */
  required?: string[];
  /** Safe to run twice: a planner re-runs a step of it elsewhere when this
   * node is lost mid-step (§8). */
  idempotent?: boolean;
  /** With `idempotent`: how long one attempt normally takes at most, in ms
   * (§7.1 `retry_after_ms`). */
  retryAfterMs?: number;
  /** A retry policy planners follow for a failed step of it (§7.1, §8). */
  retry?: RetryOptions;
  /** Locs of this function, added to the node's own (§7.1 `funs`). */
  locs?: string[];
}

/** A function with its options, as `serve`'s second argument takes it. */
export interface FunctionSpec extends FunctionOptions {
  fn: NodeFunction;
}

/** A structured log line's level. */
export type NodeLogLevel = "debug" | "info" | "warn" | "error";
/** Where a node logs: by default warnings and errors go to stderr as JSON
 * lines. */
export type NodeLogger = (level: NodeLogLevel, msg: string, attrs?: Record<string, unknown>) => void;

/** Options of {@link serve}: the node's identity and bounds, plus any
 * nats.js connection options (`servers`, `user`, `pass`, `token`,
 * `authenticator`, `tls`, …). */
export interface ServeOptions extends Omit<NodeConnectionOptions, "name"> {
  /** The cluster id (§1), `default` when absent. */
  cluster?: string;
  /** The node id (§1); host name + `-` + 6 random characters when absent. */
  id?: string;
  /** Locs of every function of the node. */
  locs?: string[];
  /** The subject prefix (§1), `mpreg` when absent. */
  prefix?: string;
  /** `hello.meta`: at most 32 entries. */
  meta?: Record<string, string>;
  /** The NATS connection's name; the node id when absent. */
  name?: string;
  /** An open connection to use instead of connecting; `drain()` leaves it
   * open. */
  connection?: NatsConnection;
  /** The codecs the node announces in `hello.codecs`, in its order of
   * preference (default MessagePack, then JSON): planners send it steps in
   * the first one they speak. It reads both whatever it announces. */
  codecs?: CodecName[];
  /** Heartbeat interval in ms (default 1,000). */
  heartbeatMs?: number;
  /** Steps run at once (`max_inflight`, default 256). */
  maxInflight?: number;
  /** Steps queued past `maxInflight` (`max_queue`, default 1,024); past it
   * OVERLOADED. */
  maxQueue?: number;
  /** The longest a step runs when its deadline is further off or absent
   * (default 10 min, §6.1). */
  maxStepMs?: number;
  /** A result larger than this (in bytes, at most half the NATS max
   * payload; default 256 KiB) is stored in the cluster's object bucket and
   * sent by reference (§4.7), when the bucket is there. */
  inlineMax?: number;
  /** The largest value by reference the node fetches for a step
   * (`max_object_bytes`, default 1 GiB); a larger one is
   * PAYLOAD_TOO_LARGE. */
  maxObjectBytes?: number;
  /** How long `drain()` waits for the steps in flight (default 30 s);
   * steps still running then are answered NODE_UNAVAILABLE. */
  drainTimeoutMs?: number;
  /** On SIGTERM and SIGINT: drain, then exit the process (default true). */
  handleSignals?: boolean;
  /** Log unhandled promise rejections instead of letting them end the
   * process (default true), so that a function's stray promise is never a
   * crash. */
  catchUnhandledRejections?: boolean;
  /** Where the node logs. */
  logger?: NodeLogger;
}

const MAX_ID = 64;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const FUN_RE = /^[^\s.*>]{1,128}$/u;
const LOC_RE = /^\S{1,128}$/u;
const MAX_EXEC_ID = 1024;
const MAX_ATTEMPT = 128;
const MAX_INSTANCE = 64;
const MAX_REPLY_SUBJECT = 1024;
const MAX_FUNS = 4096;
const MAX_LOCS = 64;
const MAX_META = 32;
const MAX_DEPTH = 256;
const MAX_DECODED = 32 << 20;
const DAY_MS = 86_400_000;
const MAX_INT = Number.MAX_SAFE_INTEGER;

const byteLen = (s: string): number => Buffer.byteLength(s);

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/** A step in flight or queued on the node. */
interface Step {
  key: string; // attempt, else exec id (§6.3)
  ctrl?: AbortController; // made when the function reads ctx.signal
  aborted?: MpregError; // why the step ended early: its deadline, a cancel, a drain
  abort: (reason: MpregError) => void;
  timer?: ReturnType<typeof setTimeout>;
  received: number; // performance.now() at receipt
  started?: number;
  answered: boolean;
  fetched?: number; // bytes fetched for references
  run: () => void;
  answer: (body: Record<string, unknown>) => void;
}

interface Registered {
  fn: NodeFunction;
  opts: FunctionOptions;
}

const defaultLogger: NodeLogger = (level, msg, attrs) => {
  if (level === "warn" || level === "error") {
    process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...attrs }) + "\n");
  }
};

const randomId = (n: number): string => {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  const b = randomBytes(n);
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[b[i]! & 31];
  return s;
};

const defaultNodeId = (): string => {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, MAX_ID - 7) || "node";
  return `${host}-${randomId(6).toUpperCase()}`;
};

const err = (code: ErrorCode, message: string, details?: unknown): MpregError =>
  new MpregError(code, message, details === undefined ? undefined : { details });

const invalid = (key: string, message: string): MpregError =>
  err("INVALID_REQUEST", `${key}: ${message}`, { key });

/** validateRetry checks a policy against §7.1's bounds and returns it as
 * the wire has it. */
function wireRetry(name: string, r: RetryOptions): Record<string, number> {
  const bad = (what: string): never => {
    throw err("INVALID_ARGUMENT", `${name}: retry: ${what}`);
  };
  const int = (v: unknown, lo: number, hi: number, what: string): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) bad(`${what} must be an integer in ${lo} … ${hi}`);
    return v as number;
  };
  const out: Record<string, number> = { attempts: int(r.attempts, 1, 100, "attempts") };
  const initial = r.initialBackoffMs === undefined ? 0 : int(r.initialBackoffMs, 0, DAY_MS, "initialBackoffMs");
  if (initial) out.initial_backoff_ms = initial;
  if (r.maxBackoffMs !== undefined && r.maxBackoffMs !== 0) {
    out.max_backoff_ms = int(r.maxBackoffMs, initial, DAY_MS, "maxBackoffMs");
  }
  if (r.multiplier !== undefined) {
    if (typeof r.multiplier !== "number" || !(r.multiplier >= 1 && r.multiplier <= 100)) bad("multiplier must be in 1 … 100");
    out.multiplier = r.multiplier;
  }
  if (r.jitter !== undefined) {
    if (typeof r.jitter !== "number" || !(r.jitter >= 0 && r.jitter <= 1)) bad("jitter must be in 0 … 1");
    out.jitter = r.jitter;
  }
  return out;
}

function checkLocs(what: string, locs: unknown): string[] {
  if (locs === undefined) return [];
  if (!Array.isArray(locs)) throw err("INVALID_ARGUMENT", `${what}: locs: want a list of strings`);
  for (const l of locs) {
    if (typeof l !== "string" || !LOC_RE.test(l)) {
      throw err("INVALID_ARGUMENT", `${what}: loc ${JSON.stringify(l)}: want 1–128 printable characters, no white space`);
    }
  }
  return locs as string[];
}

/** A reference found in a step's arguments, and where its value goes. */
interface PendingRef {
  raw: unknown;
  path: string;
  set: (v: unknown) => void;
}

/** unescapeArg reads a value a node gives a function (§4.7): a map whose
 * only key is `$lit` stands for the map inside, whose own values are read
 * as usual; a map whose only key is `$obj` is a reference, collected in refs
 * to be fetched (its place is filled by set). */
function unescapeArg(v: unknown, path: string, refs: PendingRef[], set: (v: unknown) => void): unknown {
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = unescapeArg(v[i], `${path}[${i}]`, refs, (x) => { out[i] = x; });
    return out;
  }
  if (!isMap(v)) return v;
  const keys = Object.keys(v);
  if (keys.length === 1 && keys[0] === "$obj") {
    refs.push({ raw: v.$obj, path, set });
    return null;
  }
  const src = keys.length === 1 && keys[0] === "$lit" && isMap(v.$lit) ? v.$lit : v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(src)) out[k] = unescapeArg(src[k], `${path}.${k}`, refs, (x) => { out[k] = x; });
  return out;
}

/** checkRef checks a reference's keys (§4.7): INVALID_ARGUMENT when one is
 * missing or malformed. */
function checkRef(raw: unknown, path: string): ObjRef {
  const r = raw as Partial<ObjRef> | null;
  const bad = (why: string): MpregError =>
    new MpregError("INVALID_ARGUMENT", `${path}: malformed reference: ${why}`, { details: { param: path } });
  if (!isMap(r)) throw bad("not a map");
  if (typeof r.bucket !== "string" || r.bucket.length === 0 || byteLen(r.bucket) > 256) throw bad("bucket");
  if (typeof r.name !== "string" || r.name.length === 0 || byteLen(r.name) > 2048) throw bad("name");
  if (typeof r.size !== "number" || !Number.isSafeInteger(r.size) || r.size < 0) throw bad("size");
  if (typeof r.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) throw bad("sha256");
  if (r.encoding !== "bytes" && r.encoding !== "msgpack" && r.encoding !== "json") throw bad("encoding");
  return r as ObjRef;
}

/** escapeResult escapes the maps of a result that would read as a
 * reference or an escape (§4.7) and bounds it: a result whose size (string
 * and binary lengths plus a byte per scalar and element, §6.1) passes max
 * is PAYLOAD_TOO_LARGE before it is walked further, and one nested past
 * the body bound does not encode. */
function escapeResult(v: unknown, max: number, limit: string): { value: unknown; size: number } {
  let size = 0;
  const over = (): never => {
    throw new MpregError("PAYLOAD_TOO_LARGE", `the result exceeds the limit ${limit}=${max}`,
      { details: { limit, size, max } });
  };
  const walk = (x: unknown, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw err("FUNCTION_ERROR", `the result nests deeper than ${MAX_DEPTH} levels and does not encode`);
    size++;
    if (typeof x === "string") size += x.length;
    else if (x instanceof Uint8Array) size += x.length;
    if (size > max) over();
    if (x === undefined) return null;
    if (Array.isArray(x)) return x.map((e) => walk(e, depth + 1));
    if (x instanceof Uint8Array || !isMap(x)) return x;
    if (x instanceof Date) return x.toISOString();
    const out: Record<string, unknown> = {};
    const keys = Object.keys(x);
    for (const k of keys) {
      size += k.length;
      const val = x[k];
      if (val !== undefined) out[k] = walk(val, depth + 1);
    }
    if (keys.length === 1 && (keys[0] === "$obj" || keys[0] === "$lit")) return { $lit: out };
    return out;
  };
  const value = walk(v, 0);
  return { value, size };
}

/** bindParams places kwargs on the function's named parameters, as a Go
 * node's WithParams does. */
function bindParams(fun: string, o: FunctionOptions, args: unknown[], kwargs: Record<string, unknown>): unknown[] {
  const params = o.params!;
  if (args.length > params.length) {
    throw err("INVALID_ARGUMENT", `${fun} takes ${params.length} arguments, got ${args.length}`);
  }
  const set: unknown[] = args.slice();
  const have = params.map((_, i) => i < args.length);
  for (const k of Object.keys(kwargs)) {
    const i = params.indexOf(k);
    if (i < 0) throw err("INVALID_ARGUMENT", `${fun} has no parameter ${JSON.stringify(k)}`, { param: k });
    if (have[i]) throw err("INVALID_ARGUMENT", `${fun}: parameter ${k} given twice`, { param: k });
    set[i] = kwargs[k];
    have[i] = true;
  }
  for (const r of o.required ?? []) {
    const i = params.indexOf(r);
    if (i >= 0 && !have[i]) throw err("INVALID_ARGUMENT", `${fun}: missing argument ${r}`, { param: r });
  }
  while (set.length < params.length) set.push(undefined);
  return set;
}

/** The parts of an exec body the node uses, checked (§6.1). */
interface ExecRequest {
  id: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  deadline?: number;
  attempt?: string;
  timing: boolean;
}

function parseExec(body: Record<string, unknown>): ExecRequest {
  const id = body.id ?? "";
  if (typeof id !== "string") throw invalid("id", `want string, got ${typeName(id)}`);
  if (byteLen(id) > MAX_EXEC_ID) {
    throw new MpregError("INVALID_REQUEST", `id: longer than ${MAX_EXEC_ID} bytes`,
      { details: { key: "id", limit: "max_id_len", max: MAX_EXEC_ID } });
  }
  const fun = body.fun;
  if (typeof fun !== "string") throw invalid("fun", fun === undefined ? "missing" : `want string, got ${typeName(fun)}`);
  if (!FUN_RE.test(fun)) throw invalid("fun", "want 1–128 printable characters, no white space, no '.', '*', '>'");
  const args = body.args ?? [];
  if (!Array.isArray(args)) throw invalid("args", `want list, got ${typeName(args)}`);
  const kwargs = body.kwargs ?? {};
  if (!isMap(kwargs)) throw invalid("kwargs", `want map, got ${typeName(kwargs)}`);
  let deadline: number | undefined;
  if (body.deadline_ms !== undefined && body.deadline_ms !== null) {
    const d = body.deadline_ms;
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0 || d > MAX_INT) {
      throw invalid("deadline_ms", "want an integer in 0 … 2^53-1");
    }
    deadline = d;
  }
  let attempt: string | undefined;
  if (body.attempt !== undefined && body.attempt !== null) {
    if (typeof body.attempt !== "string") throw invalid("attempt", `want string, got ${typeName(body.attempt)}`);
    if (byteLen(body.attempt) > MAX_ATTEMPT) {
      throw new MpregError("INVALID_REQUEST", `attempt: longer than ${MAX_ATTEMPT} bytes`,
        { details: { key: "attempt", limit: "max_attempt_len", max: MAX_ATTEMPT } });
    }
    attempt = body.attempt;
  }
  if (body.timing !== undefined && body.timing !== null && typeof body.timing !== "boolean") {
    throw invalid("timing", `want boolean, got ${typeName(body.timing)}`);
  }
  return { id, fun, args, kwargs, deadline, attempt, timing: body.timing === true };
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "list";
  if (v instanceof Uint8Array) return "binary";
  if (typeof v === "object") return "map";
  if (typeof v === "bigint") return "number";
  return typeof v;
}

/** namedCodec reports whether a message names its codec (§6.2): with
 * neither Content-Type nor Accept its final reply carries no header. */
const namesCodec = (h: MsgHdrs | undefined): boolean =>
  !!h && (!!h.get("Content-Type") || !!h.get("Accept"));

/** A node of an MPREG cluster serving functions; see {@link serve}. */
export class Node {
  /** The node id. */
  readonly id: string;
  /** The cluster id. */
  readonly cluster: string;
  /** This process's incarnation (its start, unix ms) and instance. */
  readonly incarnation: number;
  readonly instance: string;
  /** The NATS connection. */
  readonly nc: NatsConnection;

  #subs: ReturnType<typeof subjects>;
  #locs: string[];
  #meta: Record<string, string>;
  #funs = new Map<string, Registered>();
  #version = 1;
  #seq = 0;
  #gone = false; // said goodbye: info and sync answer with it
  #stopped = false;
  #running = 0;
  #queue: Step[] = [];
  #steps = new Map<string, Set<Step>>(); // by attempt or id, running or queued
  #codecs: string[];
  #maxInflight: number;
  #maxQueue: number;
  #maxStepMs: number;
  #maxObjectBytes: number;
  #bucket: string;
  #store?: Promise<ObjectStore>;
  #storeMissingAt = 0;
  #storeReady?: ObjectStore;
  #inlineMax: number;
  #heartbeatMs: number;
  #drainTimeoutMs: number;
  #log: NodeLogger;
  #ownConn: boolean;
  #natsSubs: Subscription[] = [];
  #beat?: ReturnType<typeof setTimeout>;
  #idle?: () => void;
  #lastRefute = 0;
  #refuteTimer?: ReturnType<typeof setTimeout>;
  #logged = new Map<string, number>();
  #drained?: Promise<void>;
  #cleanups: Array<() => void> = [];

  /** @internal use {@link serve}. */
  constructor(nc: NatsConnection, ownConn: boolean, o: ServeOptions) {
    this.nc = nc;
    this.#ownConn = ownConn;
    this.cluster = o.cluster ?? "default";
    this.id = o.id ?? defaultNodeId();
    if (!ID_RE.test(this.cluster)) throw err("INVALID_ARGUMENT", `cluster ${JSON.stringify(this.cluster)}: want 1–64 of [A-Za-z0-9_-]`);
    if (!ID_RE.test(this.id)) throw err("INVALID_ARGUMENT", `node id ${JSON.stringify(this.id)}: want 1–64 of [A-Za-z0-9_-]`);
    this.#subs = subjects(this.cluster, o.prefix);
    this.#locs = checkLocs(`node ${this.id}`, o.locs ?? []);
    this.#meta = { ...(o.meta ?? {}) };
    if (Object.keys(this.#meta).length > MAX_META - 1) throw err("INVALID_ARGUMENT", `meta: at most ${MAX_META - 1} entries`);
    for (const [k, v] of Object.entries(this.#meta)) {
      if (typeof v !== "string" || byteLen(k) > 64 || byteLen(v) > 1024) {
        throw err("INVALID_ARGUMENT", `meta ${JSON.stringify(k)}: want a string key of at most 64 bytes and a string value of at most 1,024`);
      }
    }
    this.#meta.mpreg ??= `${PACKAGE_VERSION}-js`;
    this.incarnation = Date.now();
    this.instance = randomId(22);
    const codecs = o.codecs ?? ["msgpack", "json"];
    if (!codecs.length || codecs.some((c) => c !== "json" && c !== "msgpack")) {
      throw err("INVALID_ARGUMENT", `codecs: want "msgpack" and/or "json"`);
    }
    this.#codecs = [...new Set(codecs)].map((c) => (c === "json" ? JSON_TYPE : MSGPACK_TYPE));
    this.#maxInflight = o.maxInflight ?? 256;
    this.#maxQueue = o.maxQueue ?? 1024;
    this.#maxStepMs = o.maxStepMs ?? 600_000;
    this.#maxObjectBytes = o.maxObjectBytes ?? 1 << 30;
    this.#inlineMax = o.inlineMax ?? 256 << 10;
    this.#bucket = bucketName(this.cluster, o.prefix);
    this.#heartbeatMs = o.heartbeatMs ?? 1000;
    this.#drainTimeoutMs = o.drainTimeoutMs ?? 30_000;
    this.#log = o.logger ?? defaultLogger;
  }

  /** The node's current version (§7.1): it grows with every change. */
  get version(): number {
    return this.#version;
  }

  /** Steps running or queued. */
  get inflight(): number {
    return this.#running + this.#queue.length;
  }

  /** Offers fn as name: the node announces it at once (a new hello with a
   * greater version). Registering a name again replaces it. */
  register(name: string, fn: NodeFunction, opts: FunctionOptions = {}): void {
    if (typeof name !== "string" || !FUN_RE.test(name)) {
      throw err("INVALID_ARGUMENT", `function name ${JSON.stringify(name)}: want 1–128 printable characters, no white space, no '.', '*', '>'`);
    }
    if (typeof fn !== "function") throw err("INVALID_ARGUMENT", `${name}: want a function`);
    const locs = checkLocs(name, opts.locs);
    if (new Set([...this.#locs, ...locs]).size > MAX_LOCS) throw err("INVALID_ARGUMENT", `${name}: more than ${MAX_LOCS} locs`);
    if (opts.retry) wireRetry(name, opts.retry);
    if (opts.retryAfterMs !== undefined && !(Number.isInteger(opts.retryAfterMs) && opts.retryAfterMs >= 0 && opts.retryAfterMs <= DAY_MS)) {
      throw err("INVALID_ARGUMENT", `${name}: retryAfterMs: want an integer in 0 … 86,400,000`);
    }
    if (opts.params) {
      if (!Array.isArray(opts.params) || opts.params.some((p) => typeof p !== "string") || new Set(opts.params).size !== opts.params.length) {
        throw err("INVALID_ARGUMENT", `${name}: params: want distinct strings`);
      }
      for (const r of opts.required ?? []) {
        if (!opts.params.includes(r)) throw err("INVALID_ARGUMENT", `${name}: required ${r} is not in params`);
      }
    } else if (opts.required?.length) {
      throw err("INVALID_ARGUMENT", `${name}: required needs params`);
    }
    if (!this.#funs.has(name) && this.#funs.size >= MAX_FUNS) throw err("INVALID_ARGUMENT", `more than ${MAX_FUNS} functions`);
    const before = this.#funs.get(name);
    this.#funs.set(name, { fn, opts: { ...opts } });
    // The hello must fit a message: peers learn the node only from it.
    const max = this.nc.info?.max_payload ?? 1 << 20;
    const size = encode("json", this.#gone ? {} : this.hello()).length;
    if (size > max) {
      if (before) this.#funs.set(name, before);
      else this.#funs.delete(name);
      throw new MpregError("PAYLOAD_TOO_LARGE", `${name}: the node's hello would be ${size} bytes, over the NATS max payload of ${max}`,
        { details: { limit: "max_payload", size, max } });
    }
    this.#changed();
  }

  /** Stops offering name (a new hello). */
  unregister(name: string): boolean {
    const had = this.#funs.delete(name);
    if (had) this.#changed();
    return had;
  }

  #changed(): void {
    this.#version++;
    if (this.#natsSubs.length && !this.#gone) this.#announce();
  }

  /** The node's hello (its goodbye once draining), as info and sync answer. */
  hello(): Record<string, unknown> {
    if (this.#gone) return this.#goodbye();
    const funs: Record<string, string[]> = {};
    const idempotent: string[] = [];
    const retry: Record<string, unknown> = {};
    const retryAfter: Record<string, number> = {};
    for (const [name, { opts }] of this.#funs) {
      funs[name] = [...new Set([...this.#locs, ...(opts.locs ?? [])])];
      if (opts.idempotent) {
        idempotent.push(name);
        if (opts.retryAfterMs) retryAfter[name] = opts.retryAfterMs;
      }
      if (opts.retry && opts.retry.attempts > 1) retry[name] = wireRetry(name, opts.retry);
    }
    const h: Record<string, unknown> = {
      kind: "hello", cluster: this.cluster, node: this.id, incarnation: this.incarnation, instance: this.instance,
      version: this.#version, funs, codecs: this.#codecs, meta: this.#meta, proto: 1,
    };
    if (this.#codecs.includes(MSGPACK_TYPE)) h.bare = MSGPACK_TYPE;
    if (idempotent.length) h.idempotent = idempotent;
    if (Object.keys(retryAfter).length) h.retry_after_ms = retryAfter;
    if (Object.keys(retry).length) h.retry = retry;
    return h;
  }

  #goodbye(): Record<string, unknown> {
    return { kind: "goodbye", cluster: this.cluster, node: this.id, incarnation: this.incarnation, instance: this.instance };
  }

  #publishGossip(subject: string, body: unknown): void {
    if (this.nc.isClosed()) return;
    try {
      const h = natsHeaders();
      h.set("Content-Type", JSON_TYPE);
      this.nc.publish(subject, encode("json", body), { headers: h });
    } catch (e) {
      this.#rateLog("gossip", "error", "gossip not sent", { subject, error: String(e) });
    }
  }

  #announce(): void {
    this.#publishGossip(this.#subs.hello, this.hello());
  }

  #heartbeat(): void {
    if (this.#stopped) return;
    this.#publishGossip(this.#subs.heartbeat, {
      cluster: this.cluster, node: this.id, incarnation: this.incarnation, instance: this.instance,
      version: this.#version, seq: ++this.#seq, load: { inflight: this.inflight, limit: this.#maxInflight },
    });
    this.#beat = setTimeout(() => this.#heartbeat(), this.#heartbeatMs);
  }

  #rateLog(key: string, level: NodeLogLevel, msg: string, attrs: Record<string, unknown>): void {
    const now = Date.now();
    if (now - (this.#logged.get(key) ?? 0) < 10_000) return;
    if (this.#logged.size > 1000) this.#logged.clear();
    this.#logged.set(key, now);
    this.#log(level, msg, { node: this.id, ...attrs });
  }

  /** @internal */
  async start(): Promise<void> {
    await this.#checkTwin();
    const sub = (subject: string, cb: (m: Msg) => void): void => {
      this.#natsSubs.push(this.nc.subscribe(subject, {
        callback: (e, m) => {
          if (e) return;
          try {
            cb(m);
          } catch (x) {
            this.#rateLog(`cb ${subject}`, "error", "a message was not handled", { subject, error: String(x) });
          }
        },
      }));
    };
    sub(this.#subs.exec(this.id), (m) => this.#onExec(m));
    sub(this.#subs.nodeCancel(this.id), (m) => this.#onCancel(m));
    sub(this.#subs.info(this.id), (m) => this.#onInfo(m));
    sub(this.#subs.sync, (m) => this.#onInfo(m));
    sub(this.#subs.hello, (m) => this.#onGossip(m, "hello"));
    sub(this.#subs.heartbeat, (m) => this.#onGossip(m, "heartbeat"));
    sub(this.#subs.goodbye, (m) => this.#onGossip(m, "goodbye"));
    await this.nc.flush();
    this.#announce();
    this.#beat = setTimeout(() => this.#heartbeat(), Math.floor(Math.random() * this.#heartbeatMs));
    void this.#watchStatus();
    void this.#bucketStore();
    await this.nc.flush();
    this.#log("info", "node serving", { cluster: this.cluster, funs: [...this.#funs.keys()] });
  }

  /** checkTwin refuses to start when another process answers this id's
   * info subject with its hello (§7.6). */
  async #checkTwin(): Promise<void> {
    let m: Msg;
    try {
      m = await this.nc.request(this.#subs.info(this.id), undefined, { timeout: 500 });
    } catch {
      return; // no responders, or silence
    }
    let h: unknown;
    try {
      h = decode(requestCodec(m.headers, m.data, false), m.data, { maxDepth: MAX_DEPTH, maxBytes: MAX_DECODED });
    } catch {
      return;
    }
    if (isMap(h) && h.kind !== "goodbye" && (h.version !== undefined || h.funs !== undefined)) {
      throw err("INVALID_ARGUMENT", `node id ${this.id} is in use by another process (instance ${String(h.instance).slice(0, 64)}) in cluster ${this.cluster}`);
    }
  }

  async #watchStatus(): Promise<void> {
    try {
      for await (const s of this.nc.status()) {
        if (this.#stopped) return;
        // §7.1: after a reconnect, and when NATS announces new servers.
        if (s.type === "reconnect" || (s.type === "update" && s.added?.length)) {
          if (!this.#gone) this.#announce();
        }
      }
    } catch {
      // the connection closed
    }
  }

  /** reply answers m (never throws): in codec, with Content-Type unless
   * bare (the request named no codec). A reply that cannot be sent is
   * replaced by its error. */
  #reply(m: Msg, body: Record<string, unknown>, codec: CodecName, bare: boolean): void {
    if (!m.reply || m.reply.length > MAX_REPLY_SUBJECT) return;
    const send = (b: Record<string, unknown>): void => {
      const data = encode(codec, b);
      const max = this.nc.info?.max_payload ?? 1 << 20;
      if (data.length > max) {
        throw new MpregError("PAYLOAD_TOO_LARGE", `a reply of ${data.length} bytes exceeds the NATS max payload of ${max} bytes`,
          { details: { limit: "max_payload", size: data.length, max } });
      }
      let h: MsgHdrs | undefined;
      if (!bare) {
        h = natsHeaders();
        h.set("Content-Type", codec === "json" ? JSON_TYPE : MSGPACK_TYPE);
      }
      m.respond(data, h ? { headers: h } : undefined);
    };
    try {
      send(body);
      return;
    } catch (e) {
      const w = e instanceof MpregError ? toWireError(e, this.id)
        : { code: "FUNCTION_ERROR", message: `the reply does not encode: ${(e as Error)?.message ?? String(e)}`, node: this.id };
      try {
        send({ error: clip(w) });
      } catch (e2) {
        this.#rateLog("reply", "error", "reply not sent", { error: String(e2) });
      }
    }
  }

  #errorBody(e: unknown): Record<string, unknown> {
    return { error: clip(toWireError(e, this.id)) };
  }

  #onExec(m: Msg): void {
    // The codec: Content-Type (or the first byte, with no codec named, as
    // hello.bare says); an unknown one is UNSUPPORTED_CODEC in JSON.
    const bare = !namesCodec(m.headers);
    let codec: CodecName;
    try {
      codec = requestCodec(m.headers, m.data, this.#codecs.includes(MSGPACK_TYPE));
    } catch (e) {
      this.#reply(m, this.#errorBody(e), "json", false);
      return;
    }
    let out: CodecName;
    try {
      out = replyCodec(m.headers, codec);
    } catch (e) {
      this.#reply(m, this.#errorBody(e), codec, false);
      return;
    }
    const answer = (b: Record<string, unknown>): void => this.#reply(m, b, out, bare);
    let body: unknown;
    try {
      body = decode(codec, m.data, { maxDepth: MAX_DEPTH, maxBytes: MAX_DECODED });
    } catch (e) {
      answer(this.#errorBody(e instanceof MpregError ? e : err("INVALID_REQUEST", `the body does not decode: ${String(e)}`)));
      return;
    }
    if (!isMap(body) || typeof body.cluster !== "string") {
      answer(this.#errorBody(invalid("cluster", "the body must be a map with a string cluster")));
      return;
    }
    if (!ID_RE.test(body.cluster)) {
      answer(this.#errorBody(invalid("cluster", "want 1–64 of [A-Za-z0-9_-]")));
      return;
    }
    if (body.cluster !== this.cluster) {
      // Another cluster's exec is dropped without a reply (§1, §6.1).
      this.#rateLog("cluster", "warn", "exec of another cluster dropped", { cluster: String(body.cluster).slice(0, 64) });
      return;
    }
    let req: ExecRequest;
    try {
      req = parseExec(body);
    } catch (e) {
      answer(this.#errorBody(e));
      return;
    }
    if (this.#gone) {
      answer(this.#errorBody(err("SHUTTING_DOWN", `node ${this.id} is draining`)));
      return;
    }
    const reg = this.#funs.get(req.fun);
    if (!reg) {
      answer(this.#errorBody(err("NO_ROUTE", `node ${this.id} does not offer ${req.fun}`, { fun: req.fun, locs: [] })));
      return;
    }
    this.#admit(req, reg, answer);
  }

  #admit(req: ExecRequest, reg: Registered, answer: (b: Record<string, unknown>) => void): void {
    const now = Date.now();
    const deadline = Math.min(req.deadline ?? Infinity, now + this.#maxStepMs);
    if (deadline <= now) {
      answer(this.#errorBody(err("TIMEOUT", "the step's deadline passed before it started", req.deadline ? { deadline_ms: req.deadline } : undefined)));
      return;
    }
    if (this.#running >= this.#maxInflight && this.#queue.length >= this.#maxQueue) {
      answer(this.#errorBody(err("OVERLOADED", `node ${this.id}: ${this.#maxQueue} steps queued, the limit max_queue`,
        { limit: "max_queue", max: this.#maxQueue })));
      return;
    }
    const step: Step = {
      key: req.attempt ?? req.id,
      received: performance.now(),
      answered: false,
      run: () => void this.#run(step, req, reg, deadline),
      answer: (b) => {
        if (step.answered) return;
        step.answered = true;
        answer(b);
      },
      // The deadline, a cancel and a drain answer the step at once, queued
      // or running, and abort its signal.
      abort: (reason) => {
        if (step.aborted) return;
        step.aborted = reason;
        step.answer(this.#errorBody(reason));
        if (step.started === undefined) this.#forget(step); // still queued
        step.ctrl?.abort(reason);
      },
    };
    step.timer = setTimeout(() => step.abort(err("TIMEOUT", `the step's deadline passed`, req.deadline ? { deadline_ms: req.deadline } : undefined)),
      deadline - now);
    let set = this.#steps.get(step.key);
    if (!set) this.#steps.set(step.key, (set = new Set()));
    set.add(step);
    if (this.#running < this.#maxInflight) {
      this.#running++;
      step.run();
    } else {
      this.#queue.push(step);
    }
  }

  async #run(step: Step, req: ExecRequest, reg: Registered, deadline: number): Promise<void> {
    step.started = performance.now();
    try {
      const refs: PendingRef[] = [];
      const holder: { args: unknown[]; kwargs: Record<string, unknown> } = { args: [], kwargs: {} };
      holder.args = unescapeArg(req.args, "args", refs, (v) => { holder.args = v as unknown[]; }) as unknown[];
      // kwargs itself is not a value (§4.7): a kwarg named $obj is just that.
      for (const k of Object.keys(req.kwargs)) {
        holder.kwargs[k] = unescapeArg(req.kwargs[k], `kwargs.${k}`, refs, (v) => { holder.kwargs[k] = v; });
      }
      if (refs.length) {
        step.fetched = await this.#fetchRefs(refs);
        if (step.answered) return;
      }
      let { args, kwargs } = holder;
      if (reg.opts.params) {
        args = bindParams(req.fun, reg.opts, args, kwargs);
        kwargs = {};
      }
      const ctx: StepContext = {
        // An AbortController costs: it is made for the functions that look.
        get signal(): AbortSignal {
          if (!step.ctrl) {
            step.ctrl = new AbortController();
            if (step.aborted) step.ctrl.abort(step.aborted);
          }
          return step.ctrl.signal;
        },
        stepKey: req.id,
        deadline,
      };
      if (req.attempt !== undefined) ctx.attempt = req.attempt;
      const result = await reg.fn(args, kwargs, ctx);
      if (step.answered) return; // its deadline or cancel came first: not a result (§6.1)
      const body: Record<string, unknown> = { result: await this.#result(result, req.id) };
      if (step.answered) return;
      // fetched_bytes goes inside timing, where Go planners read it.
      if (req.timing) body.timing = this.#timing(step);
      step.answer(body);
    } catch (e) {
      if (!step.answered) {
        const b = this.#errorBody(e);
        this.#log("debug", "step failed", { node: this.id, request_id: req.id, fun: req.fun, code: (b.error as WireError).code });
        if (req.timing) b.timing = this.#timing(step);
        step.answer(b);
      }
    } finally {
      this.#finish(step);
    }
  }

  #timing(step: Step): Record<string, number> {
    const now = performance.now();
    const t: Record<string, number> = {
      queue_us: Math.round((step.started! - step.received) * 1000),
      run_us: Math.round((now - step.started!) * 1000),
    };
    if (step.fetched) t.fetched_bytes = step.fetched;
    return t;
  }

  /** result is what the exec reply carries of a function's value: the
   * value escaped (§4.7), or, over the inline limit when the cluster's
   * bucket is there, a reference to it, stored there. */
  async #result(v: unknown, execId: string): Promise<unknown> {
    const max = this.nc.info?.max_payload ?? 1 << 20;
    // The bucket is looked for at start: a step waits for it only then.
    const store = this.#storeReady ?? await this.#bucketStore();
    const { value, size } = store ? escapeResult(v, this.#maxObjectBytes, "max_object_bytes") : escapeResult(v, max, "max_payload");
    const inline = Math.min(this.#inlineMax, Math.floor(max / 2));
    if (!store || size <= inline) return value;
    const bytes = value instanceof Uint8Array ? value : encode("msgpack", value);
    const name = `${execId || "step"}/${randomId(22)}`;
    await store.putBlob({ name, metadata: { "mpreg-node": this.id, "mpreg-id": execId } }, bytes);
    const ref: ObjRef = {
      bucket: this.#bucket, name, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex"),
      encoding: value instanceof Uint8Array ? "bytes" : "msgpack",
    };
    return { $obj: ref };
  }

  /** bucketStore is the cluster's object bucket, or undefined when it is
   * not there (no JetStream, or no node created it): values then travel
   * inline. Looked for again at most once a minute. */
  async #bucketStore(): Promise<ObjectStore | undefined> {
    if (this.#storeMissingAt && Date.now() - this.#storeMissingAt < 60_000) return undefined;
    this.#store ??= new Objm(this.nc).open(this.#bucket);
    try {
      this.#storeReady = await this.#store;
      return this.#storeReady;
    } catch {
      this.#store = undefined;
      this.#storeMissingAt = Date.now();
      return undefined;
    }
  }

  /** fetchRefs fetches the values the references of a step's arguments
   * name (§4.7), checks them against their size and SHA-256, and puts them
   * in place; it returns the bytes fetched. */
  async #fetchRefs(refs: PendingRef[]): Promise<number> {
    let fetched = 0;
    for (const r of refs) {
      const ref = checkRef(r.raw, r.path);
      if (ref.bucket !== this.#bucket) {
        throw new MpregError("PERMISSION_DENIED", `${r.path}: a reference to bucket ${JSON.stringify(ref.bucket)}, not the cluster's ${this.#bucket}`,
          { details: { bucket: ref.bucket, name: ref.name } });
      }
      if (ref.size > this.#maxObjectBytes) {
        throw new MpregError("PAYLOAD_TOO_LARGE", `${r.path}: a value of ${ref.size} bytes by reference exceeds the limit max_object_bytes=${this.#maxObjectBytes}`,
          { details: { limit: "max_object_bytes", max: this.#maxObjectBytes, size: ref.size, bucket: ref.bucket, name: ref.name } });
      }
      const bytes = await this.#readObject(ref);
      fetched += bytes.length;
      r.set(ref.encoding === "bytes" ? bytes
        : unescapeLiterals(decode(ref.encoding === "msgpack" ? "msgpack" : "json", bytes, { maxDepth: MAX_DEPTH, maxBytes: MAX_DECODED })));
    }
    return fetched;
  }

  async #readObject(ref: ObjRef): Promise<Uint8Array> {
    this.#store ??= new Objm(this.nc).open(this.#bucket);
    let store: ObjectStore;
    try {
      store = await this.#store;
    } catch (e) {
      this.#store = undefined;
      throw new MpregError("INVALID_ARGUMENT", `the object bucket ${this.#bucket} cannot be opened: ${String(e)}`,
        { details: { bucket: ref.bucket, name: ref.name } });
    }
    const missing = (): MpregError => new MpregError("INVALID_ARGUMENT", `object ${JSON.stringify(ref.name)} of ${ref.bucket} does not exist`,
      { details: { bucket: ref.bucket, name: ref.name } });
    const info = await store.info(ref.name);
    if (!info) throw missing();
    const link = info.options?.link;
    if (link && link.bucket !== this.#bucket) {
      throw new MpregError("PERMISSION_DENIED", `object ${JSON.stringify(ref.name)} links into bucket ${JSON.stringify(link.bucket)}`,
        { details: { bucket: link.bucket, name: ref.name } });
    }
    const mismatch = (what: string): MpregError =>
      new MpregError("INTERNAL", `object ${JSON.stringify(ref.name)} does not match its reference: ${what}`,
        { details: { bucket: ref.bucket, name: ref.name, stored_by: info.headers?.get("mpreg-node") || "unknown" } });
    const r = await store.get(ref.name);
    if (!r) throw missing();
    if (r.info.size !== ref.size) throw mismatch(`size ${r.info.size}, not ${ref.size}`);
    const out = new Uint8Array(ref.size);
    const h = createHash("sha256");
    let n = 0;
    const reader = r.data.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.byteLength > ref.size) {
        await reader.cancel();
        throw mismatch("more bytes than its size");
      }
      out.set(value, n);
      h.update(value);
      n += value.byteLength;
    }
    const e = await r.error;
    if (e) throw mismatch(e.message);
    if (n !== ref.size) throw mismatch(`${n} bytes, not ${ref.size}`);
    if (h.digest("hex") !== ref.sha256) throw mismatch("SHA-256 differs");
    return out;
  }

  #forget(step: Step): void {
    clearTimeout(step.timer);
    const set = this.#steps.get(step.key);
    if (set) {
      set.delete(step);
      if (!set.size) this.#steps.delete(step.key);
    }
    const i = this.#queue.indexOf(step);
    if (i >= 0) this.#queue.splice(i, 1);
    this.#checkIdle();
  }

  #finish(step: Step): void {
    this.#running--;
    this.#forget(step);
    while (this.#running < this.#maxInflight && this.#queue.length) {
      const next = this.#queue.shift()!;
      this.#running++;
      next.run();
    }
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.inflight === 0 && this.#idle) this.#idle();
  }

  #onCancel(m: Msg): void {
    // §6.3: {"cluster", "id", "attempt"?}, no reply. A malformed cancel is
    // dropped (and logged, rate-limited).
    let body: unknown;
    try {
      body = decode(requestCodec(m.headers, m.data, false), m.data, { maxDepth: MAX_DEPTH, maxBytes: MAX_DECODED });
    } catch (e) {
      this.#rateLog("cancel", "warn", "malformed cancel dropped", { error: String(e) });
      return;
    }
    if (!isMap(body) || typeof body.cluster !== "string" || typeof body.id !== "string" ||
      (body.attempt !== undefined && body.attempt !== null && typeof body.attempt !== "string")) {
      this.#rateLog("cancel", "warn", "malformed cancel dropped", { error: "want a map with string cluster and id" });
      return;
    }
    if (body.cluster !== this.cluster) {
      this.#rateLog("cluster", "warn", "cancel of another cluster dropped", { cluster: body.cluster.slice(0, 64) });
      return;
    }
    if (byteLen(body.id) > MAX_EXEC_ID || (typeof body.attempt === "string" && byteLen(body.attempt) > MAX_ATTEMPT)) return;
    const key = typeof body.attempt === "string" ? body.attempt : body.id;
    const set = this.#steps.get(key);
    if (!set) return;
    for (const step of [...set]) {
      this.#log("debug", "step cancelled", { request_id: body.id });
      step.abort(err("CANCELLED", "the step was cancelled"));
    }
  }

  #onInfo(m: Msg): void {
    // §7.4: the hello (the goodbye once draining), in the codec Accept
    // names, JSON when it names none; the body is not read.
    let out: CodecName;
    try {
      out = replyCodec(m.headers, "json");
    } catch (e) {
      this.#reply(m, this.#errorBody(e), "json", false);
      return;
    }
    this.#reply(m, this.hello(), out, false);
  }

  #onGossip(m: Msg, kind: "hello" | "heartbeat" | "goodbye"): void {
    if (this.#gone || m.data.length > 1 << 20) return;
    let b: unknown;
    try {
      b = decode(requestCodec(m.headers, m.data, false), m.data, { maxDepth: MAX_DEPTH, maxBytes: MAX_DECODED });
    } catch {
      return;
    }
    if (!isMap(b) || b.node !== this.id || b.cluster !== this.cluster) return;
    const instance = typeof b.instance === "string" ? b.instance.slice(0, MAX_INSTANCE) : undefined;
    const ownProcess = b.incarnation === this.incarnation && (instance === undefined || instance === this.instance);
    const claimed = typeof b.version === "number" && Number.isSafeInteger(b.version) ? b.version : 0;
    if (ownProcess) {
      // §7.6: a version above ours, or a goodbye while running, is refuted
      // by a new hello above it (a goodbye at most once every 50 ms).
      if (kind !== "goodbye" && claimed <= this.#version) return; // what we said
      this.#refute(claimed, 50);
    } else {
      // Another process under our id: a twin, or a forged claim. Log it and
      // announce ourselves again, at most once a heartbeat interval, so
      // that peers ask our info and take our word.
      this.#rateLog("twin", "error", "another process claims this node id", {
        kind, incarnation: typeof b.incarnation === "number" ? b.incarnation : null, instance: instance ?? null,
      });
      this.#refute(claimed, Math.min(this.#heartbeatMs, 1000));
    }
  }

  /** refute announces a hello with a version above claimed, at once or,
   * within gapMs of the last refutation, at its end. */
  #refute(claimed: number, gapMs: number): void {
    if (claimed >= this.#version && claimed < MAX_INT) this.#version = claimed;
    if (this.#refuteTimer) return;
    const wait = this.#lastRefute + gapMs - Date.now();
    const go = (): void => {
      this.#refuteTimer = undefined;
      if (this.#gone) return;
      this.#lastRefute = Date.now();
      this.#version++;
      this.#announce();
    };
    if (wait <= 0) go();
    else this.#refuteTimer = setTimeout(go, wait);
  }

  /** Says goodbye (§7.3), answers info and sync with it, refuses new steps
   * (SHUTTING_DOWN), waits for the steps in flight to be answered (at most
   * `drainTimeoutMs`; those still running then are answered
   * NODE_UNAVAILABLE), then stops heart-beating and unsubscribes, and
   * drains the connection when the node opened it. Calling it again
   * returns the same promise. */
  drain(): Promise<void> {
    this.#drained ??= this.#drain();
    return this.#drained;
  }

  async #drain(): Promise<void> {
    this.#gone = true;
    this.#publishGossip(this.#subs.goodbye, this.#goodbye());
    try {
      await this.nc.flush();
    } catch {
      // closed
    }
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#drainTimeoutMs);
        this.#idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    for (const set of this.#steps.values()) {
      for (const s of set) s.abort(err("NODE_UNAVAILABLE", `node ${this.id} stopped while the step ran (it may have run)`));
    }
    this.#stopped = true;
    clearTimeout(this.#beat);
    clearTimeout(this.#refuteTimer);
    for (const c of this.#cleanups) c();
    try {
      await this.nc.flush();
      if (this.#ownConn) await this.nc.drain();
      else for (const s of this.#natsSubs) s.unsubscribe();
    } catch (e) {
      this.#log("warn", "drain", { error: String(e) });
    }
    this.#log("info", "node drained", {});
  }

  /** @internal */
  onCleanup(f: () => void): void {
    this.#cleanups.push(f);
  }
}

function clip(w: WireError): WireError {
  if (w.message.length <= 1024) return w;
  return { ...w, message: w.message.slice(0, 1024), details: undefined };
}

/** The options of serve that are the node's, not the connection's. */
const NODE_OPTIONS = ["connection", "cluster", "id", "locs", "prefix", "meta", "codecs", "heartbeatMs", "maxInflight",
  "maxQueue", "maxStepMs", "maxObjectBytes", "inlineMax", "drainTimeoutMs", "handleSignals", "catchUnhandledRejections", "logger"] as const;

/** Functions as serve's second argument takes them: a function, or one
 * with its options. */
export type Functions = Record<string, NodeFunction | FunctionSpec>;

/**
 * Connects to NATS and serves functions as a node of an MPREG cluster.
 *
 * ```ts
 * const n = await serve({ servers: "nats://127.0.0.1:4222", id: "js-1", locs: ["js"] },
 *   { shout: ([s]) => String(s).toUpperCase() + "!" });
 * ```
 *
 * The node announces itself (hello), heart-beats, answers info and sync,
 * runs exec requests within their deadlines, and says goodbye on
 * {@link Node.drain}. Unless `handleSignals: false`, SIGTERM and SIGINT
 * drain the node and then exit the process.
 */
export async function serve(opts: ServeOptions = {}, functions: Functions = {}): Promise<Node> {
  const natsOpts: Record<string, unknown> = { ...opts };
  for (const k of NODE_OPTIONS) delete natsOpts[k];
  const { connection, handleSignals, catchUnhandledRejections } = opts;
  const nc = connection ?? await natsConnect({ name: opts.id, ...natsOpts } as NodeConnectionOptions);
  let n: Node;
  try {
    n = new Node(nc, !connection, opts);
    for (const [name, f] of Object.entries(functions)) {
      if (typeof f === "function") n.register(name, f);
      else n.register(name, f.fn, f);
    }
    await n.start();
  } catch (e) {
    if (!connection) await nc.close();
    throw e;
  }
  const log = opts.logger ?? defaultLogger;
  if (catchUnhandledRejections !== false) {
    const onRejection = (reason: unknown): void => {
      log("error", "unhandled promise rejection", { node: n.id, error: String((reason as Error)?.stack ?? reason) });
    };
    process.on("unhandledRejection", onRejection);
    n.onCleanup(() => process.off("unhandledRejection", onRejection));
  }
  if (handleSignals !== false) {
    const onSignal = (sig: NodeJS.Signals): void => {
      log("info", "signal: draining", { node: n.id, signal: sig });
      n.drain().then(() => process.exit(0), () => process.exit(1));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    n.onCleanup(() => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    });
  }
  return n;
}
