// TypeScript types of the wire bodies of docs/PROTOCOL.md §4–§9, and the subjects of §2.

import { createHash } from "node:crypto";

import type { WireError } from "./errors.js";

/** One command of a request (§4). */
export interface Command {
  name: string;
  fun: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  locs?: string[];
}

/** An RPC request (§4, §4.8). */
export interface Request {
  id?: string;
  cmds: Command[];
  timeout_ms?: number;
  deadline_ms?: number;
  results?: "sinks" | "all";
  on_error?: "stop" | "continue";
  trace?: boolean;
  stream?: boolean;
  progress?: boolean;
  split_results?: boolean;
  dry_run?: boolean;
  route_wait_ms?: number;
  durable?: boolean;
  submit?: boolean;
  result_ttl_ms?: number;
}

/** One attempt of one step (§5.1 `trace`, §5.4 `step` event). */
export interface TraceEntry {
  step: string;
  fun: string;
  node: string;
  attempt: number;
  start_us: number;
  queue_us: number;
  run_us: number;
  fetched_bytes?: number;
  code: string;
}

/** One command of a dry run's plan (§5.1). */
export interface PlanStep {
  name: string;
  fun: string;
  locs: string[];
  deps: string[];
  candidates: string[];
  node: string | null;
  routable?: boolean;
}

/** A dry run's warning (§5.1). */
export interface PlanWarning {
  step: string;
  key: string;
  message: string;
  near?: string;
}

/** An RPC response (§5). */
export interface Response {
  id: string;
  results: Record<string, unknown>;
  error?: WireError;
  errors?: Record<string, WireError>;
  trace?: TraceEntry[];
  trace_truncated?: boolean;
  plan?: PlanStep[];
  problems?: WireError[];
  warnings?: PlanWarning[];
}

/** The `planned` event of a stream (§5.4). */
export interface Planned {
  id: string;
  planner: string;
  incarnation: number;
  instance?: string;
  steps: number;
}

/** A `part` event (§5.3). */
export interface Part {
  id: string;
  results: Record<string, unknown>;
}

/** One step to run on a node (§6.1). */
export interface ExecRequest {
  cluster: string;
  id: string;
  fun: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  deadline_ms?: number;
  attempt?: string;
  timing?: boolean;
}

/** An exec reply (§6.1): `result` or `error`. */
export interface ExecReply {
  result?: unknown;
  error?: WireError;
  timing?: { queue_us: number; run_us: number };
  fetched_bytes?: number;
}

/** A retry policy (§7.1 `retry`). */
export interface RetryPolicy {
  attempts: number;
  initial_backoff_ms?: number;
  max_backoff_ms?: number;
  multiplier?: number;
  jitter?: number;
}

/** A node's capability announcement (§7.1). */
export interface Hello {
  kind?: "hello";
  cluster: string;
  node: string;
  incarnation: number;
  instance?: string;
  version: number;
  funs: Record<string, string[]>;
  codecs?: string[];
  bare?: string;
  advertised_urls?: string[];
  meta?: Record<string, string>;
  proto?: number;
  idempotent?: string[];
  retry_after_ms?: Record<string, number>;
  retry?: Record<string, RetryPolicy>;
}

/** Liveness and load (§7.2). */
export interface Heartbeat {
  cluster: string;
  node: string;
  incarnation: number;
  instance?: string;
  version: number;
  seq?: number;
  load?: { inflight: number; limit: number };
}

/** A node leaving on purpose (§7.3). */
export interface Goodbye {
  kind: "goodbye";
  cluster: string;
  node: string;
  incarnation: number;
  instance?: string;
}

/** Stop a request (§9) on `P.<cluster>.cancel`; a reply, when asked, is {id, node}. */
export interface CancelRequest {
  id: string;
}

/** Stop one step on a node (§6.3). */
export interface Cancel {
  cluster: string;
  id: string;
  attempt?: string;
}

/** A status query on `P.<cluster>.status` (§4.8). */
export interface StatusRequest {
  id: string;
  wait_ms?: number;
}

/** The status of a durable request (§4.8). */
export interface Status {
  id: string;
  status: "accepted" | "running" | "done" | "failed" | "cancelled" | "unknown";
  planner?: string;
  steps_done?: number;
  steps?: number;
  result?: Record<string, unknown>;
  errors?: Record<string, WireError>;
  error?: WireError;
}

/** A reference to an object of the cluster's bucket (§4.7). */
export interface ObjRef {
  bucket: string;
  name: string;
  size: number;
  sha256: string;
  encoding: "bytes" | "msgpack" | "json";
}

/** The subjects of §2 for a cluster under a prefix (default "mpreg"). */
export function subjects(
  cluster: string,
  prefix = "mpreg",
): {
  rpc: string;
  cancel: string;
  status: string;
  sync: string;
  hello: string;
  heartbeat: string;
  goodbye: string;
  exec(node: string): string;
  nodeCancel(node: string): string;
  info(node: string): string;
  nodeRpc(node: string): string;
} {
  const p = `${prefix}.${cluster}`;
  return {
    rpc: `${p}.rpc`,
    cancel: `${p}.cancel`,
    status: `${p}.status`,
    sync: `${p}.gossip.sync`,
    hello: `${p}.gossip.hello`,
    heartbeat: `${p}.gossip.heartbeat`,
    goodbye: `${p}.gossip.goodbye`,
    exec: (node) => `${p}.node.${node}.exec`,
    nodeCancel: (node) => `${p}.node.${node}.cancel`,
    info: (node) => `${p}.node.${node}.info`,
    nodeRpc: (node) => `${p}.node.${node}.rpc`,
  };
}

/** Headers of PROTOCOL: the event of a stream message (§5.3, §5.4). */
export const EVENT_HEADER = "Mpreg-Event";

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether s is a cluster or node id (§1). */
export function isId(s: unknown): s is string {
  return typeof s === "string" && ID_RE.test(s);
}

/**
 * The object bucket of cluster C under prefix P (§4.7): `P-C`, each byte of
 * P outside A-Z a-z 0-9 and each of C outside A-Z a-z 0-9 _ - written as `_`
 * and two upper-case hex digits; a name over 251 bytes keeps its first 234,
 * then `_` and the first 16 hex digits of the SHA-256 of the whole name.
 */
export function bucketName(cluster: string, prefix = "mpreg"): string {
  const esc = (s: string, keep: RegExp): string => {
    let out = "";
    for (const b of new TextEncoder().encode(s)) {
      const c = String.fromCharCode(b);
      out += b < 0x80 && keep.test(c) ? c : "_" + b.toString(16).toUpperCase().padStart(2, "0");
    }
    return out;
  };
  const name = `${esc(prefix, /[A-Za-z0-9]/)}-${esc(cluster, /[A-Za-z0-9_-]/)}`;
  if (name.length <= 251) return name;
  return `${name.slice(0, 234)}_${createHash("sha256").update(name).digest("hex").slice(0, 16)}`;
}
