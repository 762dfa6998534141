// The caller API: connect() to a cluster, then call, run, stream, cancel,
// and the durable requests of docs/PROTOCOL.md §4.8.

import { createHash } from "node:crypto";

import {
  AuthorizationError,
  connect as natsConnect,
  createInbox,
  NoRespondersError,
  nuid,
  PermissionViolationError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import { Objm, type ObjectStore } from "@nats-io/obj";

import { codecHeaders, decode, encode, replyBodyCodec, type CodecName } from "./codec.js";
import { fromWireError, MpregError } from "./errors.js";
import {
  bucketName,
  EVENT_HEADER,
  subjects,
  type Command,
  type ObjRef,
  type Part,
  type Planned,
  type Request,
  type Response,
  type Status,
  type TraceEntry,
} from "./wire.js";

/** Options of connect(): the cluster, and any option of nats.js's connect. */
export interface ConnectOptions extends NodeConnectionOptions {
  /** The cluster id (§1), "default" when absent. */
  cluster?: string;
  /** The subject prefix (§1), "mpreg" when absent. */
  prefix?: string;
  /** The codec of the requests this client sends, "json" when absent. */
  codec?: CodecName;
  /** A request's budget when a call names none (ms), 30 s when absent. */
  defaultTimeoutMs?: number;
  /**
   * The most bytes one response may bring: its messages, its part events
   * and the objects its references name, together. 512 MiB when absent.
   */
  maxResultBytes?: number;
}

/** Options of Client.call(). */
export interface CallOptions {
  kwargs?: Record<string, unknown>;
  locs?: string[];
  /** The request's budget in ms (`timeout_ms` and `deadline_ms`). */
  timeoutMs?: number;
  /** Leave `{"$obj": …}` references in the result as they came. */
  keepRefs?: boolean;
  /** The request id; a fresh one when absent. */
  id?: string;
  /** `route_wait_ms` (§4). */
  routeWaitMs?: number;
  /** Aborting it cancels the call (§9): it then throws CANCELLED. */
  signal?: AbortSignal;
}

/** Options of Client.run() and Client.stream(). */
export interface RunOptions {
  /** `"sinks"` (default) or `"all"` (§5.1). */
  results?: "sinks" | "all";
  /** `"stop"` (default) or `"continue"` (§5.1). */
  onError?: "stop" | "continue";
  trace?: boolean;
  dryRun?: boolean;
  /** The request's budget in ms (`timeout_ms` and `deadline_ms`). */
  timeoutMs?: number;
  /** The request id; a fresh one when absent. */
  id?: string;
  /** Record the request in JetStream so that it survives its planner (§4.8). */
  durable?: boolean;
  /** `result_ttl_ms` of a durable request (§4.8). */
  resultTtlMs?: number;
  /** `route_wait_ms` (§4). */
  routeWaitMs?: number;
  /** Leave `{"$obj": …}` references in the results as they came. */
  keepRefs?: boolean;
  /** Aborting it cancels the request (§9): the answer is then CANCELLED. */
  signal?: AbortSignal;
  /**
   * The node to plan the request (§4.6): it is sent on that node's own rpc
   * subject, and on the cluster's when that node does not answer.
   */
  planner?: string;
}

/** Options of Client.stream(). */
export interface StreamOptions extends RunOptions {
  /** `progress` (§5.4): a `step` event for every step attempt as it ends. */
  progress?: boolean;
}

/** The events of a streamed response (§5.4), the last always `result`. */
export type StreamEvent =
  | { type: "planned"; planned: Planned }
  | { type: "step"; step: TraceEntry }
  | { type: "part"; part: Part }
  | { type: "result"; response: Response };

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_RESULT_BYTES = 512 * 1024 * 1024;
/** How long past a request's budget the client waits for the planner's own TIMEOUT. */
const GRACE_MS = 2_000;
/** §5.3: "no responders" is looked at again after 150 ms. */
const NO_RESPONDERS_RETRY_MS = 150;
const MAX_STATUS_WAIT_MS = 60_000;

/** Connects to NATS and returns a client of the cluster. */
export async function connect(opts: ConnectOptions = {}): Promise<Client> {
  const { cluster, prefix, codec, defaultTimeoutMs, maxResultBytes, ...natsOpts } = opts;
  let nc: NatsConnection;
  try {
    nc = await natsConnect(natsOpts);
  } catch (e) {
    if (e instanceof AuthorizationError || /authori[sz]ation|authentication|certificate|tls/i.test(String(e))) {
      throw new MpregError("UNAUTHENTICATED", `NATS refused the connection: ${(e as Error).message}`, { cause: e });
    }
    throw e;
  }
  return new Client(nc, {
    cluster: cluster ?? "default",
    prefix: prefix ?? "mpreg",
    codec: codec ?? "json",
    defaultTimeoutMs: defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxResultBytes: maxResultBytes ?? MAX_RESULT_BYTES,
    inboxPrefix: natsOpts.inboxPrefix,
  });
}

interface ClientConfig {
  cluster: string;
  prefix: string;
  codec: CodecName;
  defaultTimeoutMs: number;
  maxResultBytes: number;
  inboxPrefix?: string;
}

/** A byte budget shared by everything one response brings. */
interface Budget {
  left: number;
  max: number;
}

/** A client of one cluster. Create it with connect(). */
export class Client {
  /** The NATS connection, for anything this package does not cover. */
  readonly nc: NatsConnection;
  readonly cluster: string;
  readonly prefix: string;
  readonly codec: CodecName;
  readonly subjects: ReturnType<typeof subjects>;
  readonly bucket: string;
  private readonly cfg: ClientConfig;
  private readonly headers: MsgHdrs | undefined;
  private objm?: Objm;
  private store?: Promise<ObjectStore>;
  /** Deletes of references read, not yet answered; close() waits for them. */
  private readonly deletes = new Set<Promise<void>>();

  constructor(nc: NatsConnection, cfg: ClientConfig) {
    this.nc = nc;
    this.cfg = cfg;
    this.cluster = cfg.cluster;
    this.prefix = cfg.prefix;
    this.codec = cfg.codec;
    this.subjects = subjects(cfg.cluster, cfg.prefix);
    this.bucket = bucketName(cfg.cluster, cfg.prefix);
    this.headers = codecHeaders(cfg.codec);
  }

  /**
   * Runs one function somewhere in the cluster and returns its result.
   * Throws MpregError with the error's code, step and details.
   */
  async call(fun: string, args: unknown[] = [], opts: CallOptions = {}): Promise<unknown> {
    const timeoutMs = opts.timeoutMs ?? this.cfg.defaultTimeoutMs;
    const cmd: Command = { name: "call", fun, args };
    if (opts.kwargs) cmd.kwargs = opts.kwargs;
    if (opts.locs) cmd.locs = opts.locs;
    const req: Request = {
      id: opts.id ?? `js-${nuid.next()}`,
      cmds: [cmd],
      timeout_ms: timeoutMs,
      deadline_ms: Date.now() + timeoutMs,
    };
    if (opts.routeWaitMs !== undefined) req.route_wait_ms = opts.routeWaitMs;
    const onAbort = (): void => this.cancelQuietly(req);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let msg: Msg;
    try {
      if (opts.signal?.aborted) throw new MpregError("CANCELLED", "the call was aborted before it was sent");
      msg = await this.request(this.subjects.rpc, req, timeoutMs + GRACE_MS);
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
    const budget = this.budget();
    const resp = this.throwIfError(this.readResponse(msg, budget));
    await this.finish(resp, { keepRefs: opts.keepRefs, budget, deleteRefs: true });
    return resp.results["call"];
  }

  /**
   * Runs a request: a list of commands, or a whole Request body (whose keys
   * the options override). Returns the response; a response with an error
   * throws MpregError, whose `response` holds the whole response, partial
   * results included (`err.response.results`).
   */
  async run(cmds: Command[] | Request, opts: RunOptions = {}): Promise<Response> {
    let last: Response | undefined;
    for await (const ev of this.exchange(cmds, opts)) {
      if (ev.type === "result") last = ev.response;
    }
    return this.throwIfError(last!);
  }

  /**
   * Runs a request as a stream of events (§5.4): `planned`, `step` (with
   * `progress`), `part` (results that did not fit the response's message,
   * already merged into the final response), and last `result`, the
   * response. A response with an error is yielded too, not thrown: look at
   * `ev.response.error`.
   */
  stream(cmds: Command[] | Request, opts: StreamOptions = {}): AsyncIterable<StreamEvent> {
    return this.exchange(cmds, opts);
  }

  /**
   * Cancels every request of this caller with that id (§9). Waits up to
   * waitMs (1 s) for the first node that stopped it, then 100 ms for more,
   * and returns the nodes that answered (none: no node knew it, yet).
   */
  async cancel(id: string, opts: { waitMs?: number } = {}): Promise<string[]> {
    const inbox = createInbox(this.cfg.inboxPrefix);
    const sub = this.nc.subscribe(inbox, { max: 64 });
    const nodes: string[] = [];
    let timer = setTimeout(() => sub.unsubscribe(), opts.waitMs ?? 1_000);
    try {
      this.nc.publish(this.subjects.cancel, encode(this.codec, { id }), { reply: inbox, headers: this.headers });
      for await (const m of sub) {
        const v = this.decodeReply(m, this.budget()) as { node?: unknown };
        if (v && typeof v.node === "string") nodes.push(v.node);
        if (nodes.length === 1) {
          clearTimeout(timer);
          timer = setTimeout(() => sub.unsubscribe(), 100);
        }
      }
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
    return nodes;
  }

  /**
   * Submits a durable request (§4.8) and returns its status at once
   * (`accepted`, or the existing request's). A refusal throws MpregError.
   */
  async submit(request: Request, opts: { timeoutMs?: number } = {}): Promise<Status> {
    const req: Request = { ...request, durable: true, submit: true };
    req.id ??= `js-${nuid.next()}`;
    const msg = await this.request(this.subjects.rpc, req, (opts.timeoutMs ?? 10_000) + GRACE_MS);
    return this.checkStatus(this.decodeReply(msg, this.budget()), req.id);
  }

  /**
   * The status of a durable request (§4.8). With waitMs (≤ 60,000) the node
   * answers once the request has ended, or after waitMs. Results come with
   * their references resolved unless keepRefs. A query the node refused
   * (status `unknown` with an error) throws MpregError.
   */
  async status(id: string, opts: { waitMs?: number; keepRefs?: boolean } = {}): Promise<Status> {
    const waitMs = Math.max(0, Math.min(opts.waitMs ?? 0, MAX_STATUS_WAIT_MS));
    const body: { id: string; wait_ms?: number } = { id };
    if (waitMs > 0) body.wait_ms = waitMs;
    const msg = await this.request(this.subjects.status, body, waitMs + 10_000);
    const budget = this.budget();
    const st = this.checkStatus(this.decodeReply(msg, budget), id);
    if (st.result && !opts.keepRefs) st.result = (await this.resolve(st.result, budget, false)) as Record<string, unknown>;
    return st;
  }

  /**
   * The outcome of a durable request (§4.8) as a response. With `wait`, it
   * waits up to timeoutMs (30 s) for the request to end (TIMEOUT past it);
   * without, a request that has not ended gives undefined. A request that
   * failed or was cancelled throws MpregError (with `response`), one this
   * caller has no record of throws INVALID_REQUEST with details.id.
   */
  async get(id: string, opts: { wait?: boolean; timeoutMs?: number; keepRefs?: boolean } = {}): Promise<Response | undefined> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.cfg.defaultTimeoutMs);
    for (;;) {
      const left = deadline - Date.now();
      const st = await this.status(id, { waitMs: opts.wait ? Math.max(1, left) : 0, keepRefs: opts.keepRefs });
      if (st.status === "unknown") {
        throw new MpregError("INVALID_REQUEST", `no durable request ${JSON.stringify(id)} of this caller (or its outcome expired)`, {
          details: { id },
        });
      }
      if (st.status === "done" || st.status === "failed" || st.status === "cancelled") {
        const resp: Response = { id: st.id, results: st.result ?? {} };
        if (st.error) resp.error = st.error;
        if (st.errors) resp.errors = st.errors;
        return this.throwIfError(resp);
      }
      if (!opts.wait) return undefined;
      if (deadline - Date.now() <= 0) {
        throw new MpregError("TIMEOUT", `durable request ${JSON.stringify(id)} has not ended (${st.status})`, {
          details: { id, status: st.status },
        });
      }
    }
  }

  /**
   * Resolves the `{"$obj": …}` references in a value (one kept with
   * `keepRefs`, say) and unwraps its `{"$lit": …}` escapes, as results are
   * by default (§4.7). The value is changed in place and returned. With
   * `delete`, each object is deleted once read.
   */
  async resolveRefs(value: unknown, opts: { delete?: boolean } = {}): Promise<unknown> {
    return this.resolve(value, this.budget(), opts.delete ?? false);
  }

  /**
   * Closes the connection, once the deletes of the references it read
   * have been answered and what was published is flushed.
   */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await Promise.allSettled([...this.deletes]);
    await this.nc.drain();
  }

  // ---- internals ----

  private budget(): Budget {
    return { left: this.cfg.maxResultBytes, max: this.cfg.maxResultBytes };
  }

  private take(budget: Budget, n: number): void {
    budget.left -= n;
    if (budget.left < 0) {
      throw new MpregError("PAYLOAD_TOO_LARGE", `the response exceeds this client's maxResultBytes=${budget.max}`, {
        details: { limit: "max_result_bytes", max: budget.max },
      });
    }
  }

  /** One request, one reply, "no responders" looked at again once (§5.3). */
  private async request(subject: string, body: unknown, waitMs: number): Promise<Msg> {
    const data = encode(this.codec, body);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.nc.request(subject, data, { timeout: waitMs, headers: this.headers });
      } catch (e) {
        const err = this.requestError(e, subject, body);
        if (err.code === "NO_ROUTE" && attempt === 0) {
          await delay(NO_RESPONDERS_RETRY_MS);
          continue;
        }
        if (err.code === "TIMEOUT") this.cancelQuietly(body);
        throw err;
      }
    }
  }

  private requestError(e: unknown, subject: string, body: unknown): MpregError {
    const cause = (e as { cause?: unknown })?.cause;
    if (e instanceof NoRespondersError || cause instanceof NoRespondersError) {
      return new MpregError("NO_ROUTE", `no node answers on ${subject}`, { details: { subject }, cause: e });
    }
    if (e instanceof TimeoutError || cause instanceof TimeoutError) {
      const id = (body as { id?: unknown })?.id;
      return new MpregError("TIMEOUT", `no answer on ${subject} in time`, { details: { id }, cause: e });
    }
    if (e instanceof PermissionViolationError || cause instanceof PermissionViolationError) {
      return new MpregError("PERMISSION_DENIED", String((e as Error).message), { cause: e });
    }
    if (e instanceof MpregError) return e;
    return new MpregError("NODE_UNAVAILABLE", `request on ${subject} failed: ${(e as Error)?.message ?? e}`, { cause: e });
  }

  private cancelQuietly(body: unknown): void {
    const id = (body as { id?: unknown })?.id;
    if (typeof id !== "string" || this.nc.isClosed()) return;
    try {
      this.nc.publish(this.subjects.cancel, encode(this.codec, { id }), { headers: this.headers });
    } catch {
      // the connection is going: nothing to cancel through
    }
  }

  private decodeReply(m: Msg, budget: Budget): unknown {
    this.take(budget, m.data.byteLength);
    return decode(replyBodyCodec(m.headers, m.data), m.data);
  }

  private readResponse(m: Msg, budget: Budget): Response {
    const v = this.decodeReply(m, budget) as Response;
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new MpregError("INTERNAL", "the planner's response is not a map");
    }
    if (v.results === undefined || v.results === null) v.results = {};
    if (typeof v.results !== "object" || Array.isArray(v.results)) {
      throw new MpregError("INTERNAL", "the planner's response has results that are not a map");
    }
    return v;
  }

  private checkStatus(v: unknown, id: string): Status {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new MpregError("INTERNAL", "the status answer is not a map");
    }
    const st = v as Status;
    if (st.status === "unknown" && st.error) {
      const err = fromWireError(st.error);
      err.response = st;
      throw err;
    }
    st.id ??= id;
    return st;
  }

  private throwIfError(resp: Response): Response {
    if (resp.error) {
      const err = fromWireError(resp.error);
      err.response = resp;
      throw err;
    }
    return resp;
  }

  /** The response with its references resolved and its literals unescaped. */
  private async finish(
    resp: Response,
    opts: { keepRefs?: boolean | undefined; budget: Budget; deleteRefs: boolean },
  ): Promise<Response> {
    if (opts.keepRefs) return resp;
    resp.results = (await this.resolve(resp.results, opts.budget, opts.deleteRefs)) as Record<string, unknown>;
    return resp;
  }

  private buildRequest(cmds: Command[] | Request, opts: StreamOptions): Request {
    const base: Request = Array.isArray(cmds) ? { cmds } : { ...cmds };
    const timeoutMs = opts.timeoutMs ?? base.timeout_ms ?? this.cfg.defaultTimeoutMs;
    const req: Request = { ...base, timeout_ms: timeoutMs, deadline_ms: Date.now() + timeoutMs, split_results: true };
    req.id = opts.id ?? base.id ?? `js-${nuid.next()}`;
    if (opts.results) req.results = opts.results;
    if (opts.onError) req.on_error = opts.onError;
    if (opts.trace !== undefined) req.trace = opts.trace;
    if (opts.dryRun !== undefined) req.dry_run = opts.dryRun;
    if (opts.durable !== undefined) req.durable = opts.durable;
    if (opts.resultTtlMs !== undefined) req.result_ttl_ms = opts.resultTtlMs;
    if (opts.routeWaitMs !== undefined) req.route_wait_ms = opts.routeWaitMs;
    // Always a stream: a request running 200 ms names its planner in a
    // planned event, which the client then watches (§4.4, §5.4).
    req.stream = true;
    if (opts.progress) req.progress = true;
    return req;
  }

  /**
   * Sends a request on an inbox of its own and reads every message up to
   * the response: planned, step and part events, then the result (§5.3,
   * §5.4). Part events are merged into the response, within maxResultBytes.
   */
  private async *exchange(cmds: Command[] | Request, opts: StreamOptions): AsyncGenerator<StreamEvent> {
    const req = this.buildRequest(cmds, opts);
    const id = req.id!;
    const data = encode(this.codec, req);
    const inbox = createInbox(this.cfg.inboxPrefix);
    const sub = this.nc.subscribe(inbox);
    const budget = this.budget();
    const parts: Record<string, unknown> = {};
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      sub.unsubscribe();
    }, req.timeout_ms! + GRACE_MS);
    const onAbort = (): void => void this.cancelQuietly({ id });
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let done = false;
    let watch: PlannerWatch | undefined;
    let subject = opts.planner !== undefined ? this.subjects.nodeRpc(opts.planner) : this.subjects.rpc;
    try {
      if (opts.signal?.aborted) onAbort();
      this.nc.publish(subject, data, { reply: inbox, headers: this.headers });
      let retried = false;
      for await (const m of sub) {
        if (m.data.byteLength === 0 && m.headers?.code === 503) {
          if (subject !== this.subjects.rpc) {
            subject = this.subjects.rpc; // that node is gone or draining: any planner (§4.6)
          } else {
            if (retried) throw new MpregError("NO_ROUTE", `no node answers on ${subject}`, { details: { subject } });
            retried = true;
            await delay(NO_RESPONDERS_RETRY_MS);
          }
          this.nc.publish(subject, data, { reply: inbox, headers: this.headers });
          continue;
        }
        const ev = await this.event(m, budget, parts, opts);
        if (ev.type === "planned" && !req.durable && !watch) {
          // A durable request's new planner answers (§4.8): only others are watched.
          watch = new PlannerWatch(this.nc, this.subjects.info(ev.planned.planner), this.subjects.sync, ev.planned, () =>
            sub.unsubscribe(),
          );
        }
        if (ev.type === "result") done = true;
        yield ev;
        if (done) return;
      }
      if (watch?.lost) {
        this.cancelQuietly({ id });
        throw new MpregError("NODE_UNAVAILABLE", `planner ${watch.planner} of request ${JSON.stringify(id)} is gone: ${watch.lost}`, {
          details: { planner: watch.planner, id },
        });
      }
      if (timedOut) {
        this.cancelQuietly({ id });
        throw new MpregError("TIMEOUT", `no response to request ${JSON.stringify(id)} within its budget`, { details: { id } });
      }
      throw new MpregError("NODE_UNAVAILABLE", `the connection closed before the response to ${JSON.stringify(id)}`, {
        details: { id },
      });
    } finally {
      clearTimeout(timer);
      watch?.stop();
      opts.signal?.removeEventListener("abort", onAbort);
      sub.unsubscribe();
      if (!done && !timedOut && !watch?.lost && !this.nc.isClosed()) this.cancelQuietly({ id }); // the caller gave up
    }
  }

  private async event(m: Msg, budget: Budget, parts: Record<string, unknown>, opts: StreamOptions): Promise<StreamEvent> {
    const kind = m.headers?.get(EVENT_HEADER) ?? "";
    switch (kind) {
      case "planned":
        return { type: "planned", planned: this.decodeReply(m, budget) as Planned };
      case "step":
        return { type: "step", step: this.decodeReply(m, budget) as TraceEntry };
      case "part": {
        const part = this.decodeReply(m, budget) as Part;
        if (part === null || typeof part !== "object" || typeof part.results !== "object" || part.results === null) {
          throw new MpregError("INTERNAL", "a part event without results");
        }
        for (const [k, v] of Object.entries(part.results)) {
          if (Object.hasOwn(parts, k)) throw new MpregError("INTERNAL", `result ${JSON.stringify(k)} sent twice`, { step: k });
          parts[k] = v;
        }
        return { type: "part", part };
      }
      default: {
        // "result", or no event header: the response (§5.4).
        const resp = this.readResponse(m, budget);
        for (const [k, v] of Object.entries(parts)) {
          if (Object.hasOwn(resp.results, k)) throw new MpregError("INTERNAL", `result ${JSON.stringify(k)} sent twice`, { step: k });
          resp.results[k] = v;
        }
        return { type: "result", response: await this.finish(resp, { keepRefs: opts.keepRefs, budget, deleteRefs: true }) };
      }
    }
  }

  // ---- values: references (§4.7) and literals ----

  /** Resolves every `{"$obj": …}` in v and unwraps `{"$lit": …}` escapes. */
  private async resolve(v: unknown, budget: Budget, deleteRefs: boolean): Promise<unknown> {
    if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = await this.resolve(v[i], budget, deleteRefs);
      return v;
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === "$obj") return this.fetchRef(o["$obj"], budget, deleteRefs);
    if (keys.length === 1 && keys[0] === "$lit") {
      const inner = o["$lit"];
      if (inner !== null && typeof inner === "object" && !Array.isArray(inner) && !(inner instanceof Uint8Array)) {
        const m = inner as Record<string, unknown>;
        for (const k of Object.keys(m)) m[k] = await this.resolve(m[k], budget, deleteRefs);
      }
      return inner;
    }
    for (const k of keys) o[k] = await this.resolve(o[k], budget, deleteRefs);
    return o;
  }

  private objectStore(): Promise<ObjectStore> {
    this.objm ??= new Objm(this.nc);
    this.store ??= this.objm.open(this.bucket).catch((e: unknown) => {
      this.store = undefined;
      throw new MpregError("STORE_UNAVAILABLE", `object bucket ${this.bucket}: ${(e as Error)?.message ?? e}`, { cause: e });
    });
    return this.store;
  }

  /**
   * Reads the object a reference names (§4.7): only the cluster's bucket,
   * its size within the response's budget, its bytes checked against the
   * reference's size and SHA-256, then decoded by its encoding.
   */
  private async fetchRef(raw: unknown, budget: Budget, deleteRef: boolean): Promise<unknown> {
    const ref = checkRef(raw);
    if (ref.bucket !== this.bucket) {
      throw new MpregError("PERMISSION_DENIED", `reference to bucket ${JSON.stringify(ref.bucket)}, not the cluster's ${this.bucket}`, {
        details: { bucket: ref.bucket, name: ref.name },
      });
    }
    this.take(budget, ref.size);
    const store = await this.objectStore();
    const info = await store.info(ref.name);
    if (!info) {
      throw new MpregError("INVALID_ARGUMENT", `object ${JSON.stringify(ref.name)} of ${ref.bucket} does not exist`, {
        details: { bucket: ref.bucket, name: ref.name },
      });
    }
    const link = info.options?.link;
    if (link && link.bucket !== this.bucket) {
      throw new MpregError("PERMISSION_DENIED", `object ${JSON.stringify(ref.name)} links into bucket ${JSON.stringify(link.bucket)}`, {
        details: { bucket: link.bucket, name: ref.name },
      });
    }
    const storedBy = info.metadata?.["mpreg-node"];
    const digest = /^SHA-256=(.+)$/i.exec(info.digest ?? "")?.[1];
    if (info.size !== ref.size || (digest !== undefined && Buffer.from(digest, "base64url").toString("hex") !== ref.sha256)) {
      throw new MpregError("INTERNAL", `object ${JSON.stringify(ref.name)} does not match its reference: the bucket holds ${info.size} bytes of digest ${info.digest}`, {
        details: { bucket: ref.bucket, name: ref.name, stored_by: storedBy || "unknown" },
      });
    }
    const bytes = await this.readObject(store, ref, storedBy);
    if (deleteRef) {
      // Not awaited: the result does not wait for it; close() does. The
      // planner would delete it after result_ttl all the same (§4.7).
      const p = store.delete(ref.name).then(() => undefined, () => undefined);
      this.deletes.add(p);
      void p.finally(() => this.deletes.delete(p));
    }
    return decodeObject(ref, bytes);
  }

  private async readObject(store: ObjectStore, ref: ObjRef, storedBy: string | undefined): Promise<Uint8Array> {
    const mismatch = (what: string): MpregError =>
      new MpregError("INTERNAL", `object ${JSON.stringify(ref.name)} does not match its reference: ${what}`, {
        details: { bucket: ref.bucket, name: ref.name, stored_by: storedBy || "unknown" },
      });
    const r = await store.get(ref.name);
    if (!r) {
      throw new MpregError("INVALID_ARGUMENT", `object ${JSON.stringify(ref.name)} of ${ref.bucket} does not exist`, {
        details: { bucket: ref.bucket, name: ref.name },
      });
    }
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
    const err = await r.error;
    if (err) throw mismatch(err.message);
    if (n !== ref.size) throw mismatch(`${n} bytes, not ${ref.size}`);
    if (h.digest("hex") !== ref.sha256) throw mismatch("SHA-256 differs");
    return out;
  }
}

/** How often a caller asks its planner's info, and how long "no responders" must last (§4.4). */
const WATCH_EVERY_MS = 1_000;
const WATCH_LOST_AFTER_MS = 3_000;

/**
 * Watches the planner a planned event named (§4.4): it asks the planner's
 * info subject every second; "no responders" that lasts 3 s, or a hello of
 * another incarnation or instance, means the planner is gone, and onLost
 * is called once. A caller that gets "no responders" on sync too is in
 * another NATS account and stops watching, as the Go client does.
 */
class PlannerWatch {
  readonly planner: string;
  /** Why the planner is taken for gone, once it is. */
  lost = "";
  private readonly timer: ReturnType<typeof setInterval>;
  private missingSince = 0;
  private asking = false;
  private checkedSync = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    private readonly syncSubject: string,
    private readonly planned: Planned,
    private readonly onLost: () => void,
  ) {
    this.planner = planned.planner;
    this.timer = setInterval(() => void this.check(), WATCH_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async check(): Promise<void> {
    if (this.asking || this.lost || this.nc.isClosed()) return;
    this.asking = true;
    try {
      const m = await this.nc.request(this.subject, undefined, { timeout: WATCH_EVERY_MS });
      const hello = decode(replyBodyCodec(m.headers, m.data), m.data) as { incarnation?: unknown; instance?: unknown } | null;
      this.missingSince = 0;
      const otherInstance =
        typeof hello?.instance === "string" && typeof this.planned.instance === "string" && hello.instance !== this.planned.instance;
      if (hello?.incarnation !== this.planned.incarnation || otherInstance) this.gone("it answers as another process");
    } catch (e) {
      const cause = (e as { cause?: unknown })?.cause;
      if (e instanceof NoRespondersError || cause instanceof NoRespondersError) {
        const now = Date.now();
        if (this.missingSince === 0) {
          this.missingSince = now;
          if (!(await this.membershipVisible())) this.stop();
        } else if (now - this.missingSince >= WATCH_LOST_AFTER_MS) this.gone("no responders on its info subject");
      }
      // A timeout or a reply that does not decode says nothing either way.
    } finally {
      this.asking = false;
    }
  }

  /**
   * Whether this caller sees the membership: a caller of another NATS
   * account (§4.5) gets "no responders" on sync too, and cannot watch.
   */
  private async membershipVisible(): Promise<boolean> {
    if (this.checkedSync) return true;
    this.checkedSync = true;
    try {
      await this.nc.request(this.syncSubject, undefined, { timeout: WATCH_EVERY_MS });
      return true;
    } catch (e) {
      const cause = (e as { cause?: unknown })?.cause;
      return !(e instanceof NoRespondersError || cause instanceof NoRespondersError);
    }
  }

  private gone(why: string): void {
    this.lost = why;
    this.stop();
    this.onLost();
  }
}

/** A reference's fields, checked (§4.7); malformed is INVALID_ARGUMENT. */
function checkRef(raw: unknown): ObjRef {
  const r = raw as Partial<ObjRef> | null;
  const bad = (why: string): MpregError =>
    new MpregError("INVALID_ARGUMENT", `malformed reference: ${why}`, { details: { ref: raw } });
  if (r === null || typeof r !== "object" || Array.isArray(r)) throw bad("not a map");
  if (typeof r.bucket !== "string" || r.bucket.length === 0 || r.bucket.length > 256) throw bad("bucket");
  if (typeof r.name !== "string" || r.name.length === 0 || Buffer.byteLength(r.name) > 2048) throw bad("name");
  if (typeof r.size !== "number" || !Number.isSafeInteger(r.size) || r.size < 0) throw bad("size");
  if (typeof r.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) throw bad("sha256");
  if (r.encoding !== "bytes" && r.encoding !== "msgpack" && r.encoding !== "json") throw bad("encoding");
  return r as ObjRef;
}

function decodeObject(ref: ObjRef, bytes: Uint8Array): unknown {
  if (ref.encoding === "bytes") return bytes;
  const v = decode(ref.encoding === "msgpack" ? "msgpack" : "json", bytes);
  return unescapeLiterals(v);
}

/**
 * Unwraps `{"$lit": …}` escapes (§4.7) throughout a value; references are
 * left as they are.
 */
export function unescapeLiterals(v: unknown): unknown {
  if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = unescapeLiterals(v[i]);
    return v;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const target = keys.length === 1 && keys[0] === "$lit" && isMap(o["$lit"]) ? (o["$lit"] as Record<string, unknown>) : o;
  for (const k of Object.keys(target)) target[k] = unescapeLiterals(target[k]);
  return target;
}

/**
 * A value as a literal (§4.7): every map whose only key is `$obj` or `$lit`
 * is escaped as `{"$lit": map}`, so that nodes pass it on as itself rather
 * than read it as a reference. Arguments are sent as given: pass a value
 * through literal() when it may hold such maps and they are not references.
 */
export function literal(v: unknown): unknown {
  if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(literal);
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) out[k] = literal(o[k]);
  const keys = Object.keys(o);
  if (keys.length === 1 && (keys[0] === "$obj" || keys[0] === "$lit")) return { $lit: out };
  return out;
}

function isMap(v: unknown): boolean {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

