// The error object of docs/PROTOCOL.md §5.2 and the class a caller catches.

/** The stable error codes of PROTOCOL §5.2. */
export type ErrorCode =
  | "INVALID_REQUEST"
  | "UNSUPPORTED_CODEC"
  | "NO_ROUTE"
  | "INVALID_ARGUMENT"
  | "FUNCTION_ERROR"
  | "FUNCTION_PANIC"
  | "TIMEOUT"
  | "CANCELLED"
  | "NODE_UNAVAILABLE"
  | "PAYLOAD_TOO_LARGE"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "SHUTTING_DOWN"
  | "OVERLOADED"
  | "INTERNAL"
  | "STORE_UNAVAILABLE";

/** Every code of §5.2, in the document's order. */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  "INVALID_REQUEST",
  "UNSUPPORTED_CODEC",
  "NO_ROUTE",
  "INVALID_ARGUMENT",
  "FUNCTION_ERROR",
  "FUNCTION_PANIC",
  "TIMEOUT",
  "CANCELLED",
  "NODE_UNAVAILABLE",
  "PAYLOAD_TOO_LARGE",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "SHUTTING_DOWN",
  "OVERLOADED",
  "INTERNAL",
  "STORE_UNAVAILABLE",
] as const);

const codeSet: ReadonlySet<string> = new Set(ERROR_CODES);

/** Whether s is one of the codes of §5.2. */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === "string" && codeSet.has(s);
}

/** The error object as it travels (§5.2). */
export interface WireError {
  code: string;
  message: string;
  step?: string;
  node?: string;
  details?: unknown;
}

/**
 * An MPREG error: `code` is one of §5.2, `step` the command that failed,
 * `node` the node that answered, `details` the error's details. The error
 * of a whole request (`Client.run`) also carries `response`, the response
 * with its partial results.
 */
export class MpregError extends Error {
  code: ErrorCode;
  details?: unknown;
  step?: string;
  node?: string;
  /** The whole response, for an error that ended a request (Client.run). */
  response?: unknown;

  constructor(
    code: ErrorCode,
    message: string,
    opts?: { details?: unknown; step?: string; node?: string; cause?: unknown },
  ) {
    super(message, opts?.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "MpregError";
    this.code = code;
    if (opts?.details !== undefined) this.details = opts.details;
    if (opts?.step !== undefined) this.step = opts.step;
    if (opts?.node !== undefined) this.node = opts.node;
  }

  /** The error as it travels (§5.2). */
  toJSON(): WireError {
    const w: WireError = { code: this.code, message: this.message };
    if (this.step !== undefined) w.step = this.step;
    if (this.node !== undefined) w.node = this.node;
    if (this.details !== undefined) w.details = this.details;
    return w;
  }
}

/**
 * The MpregError of a wire error object. A code this package does not know
 * becomes INTERNAL with the peer's code and details in `details` (§5.2); a
 * value that is no error object at all is INTERNAL too.
 */
export function fromWireError(e: WireError): MpregError {
  if (e === null || typeof e !== "object") {
    return new MpregError("INTERNAL", `malformed error object: ${JSON.stringify(e)}`);
  }
  const message = typeof e.message === "string" ? e.message : String(e.message ?? "");
  const step = typeof e.step === "string" ? e.step : undefined;
  const node = typeof e.node === "string" ? e.node : undefined;
  if (isErrorCode(e.code)) {
    return new MpregError(e.code, message, { details: e.details, step, node });
  }
  return new MpregError("INTERNAL", `${String(e.code)}: ${message}`, {
    details: { code: e.code, details: e.details },
    step,
    node,
  });
}

/**
 * The wire error object of anything thrown: an MpregError keeps its code,
 * step and details; anything else is FUNCTION_ERROR with its message.
 * `node`, when given, names the node that answers (unless the error names one).
 */
export function toWireError(e: unknown, node?: string): WireError {
  if (e instanceof MpregError) {
    const w = e.toJSON();
    if (w.node === undefined && node !== undefined) w.node = node;
    return w;
  }
  let message: string;
  if (e instanceof Error) message = e.message;
  else if (typeof e === "string") message = e;
  else {
    try {
      message = JSON.stringify(e) ?? String(e);
    } catch {
      message = String(e);
    }
  }
  const w: WireError = { code: "FUNCTION_ERROR", message };
  if (node !== undefined) w.node = node;
  return w;
}
