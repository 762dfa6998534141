export * from "./errors.js";
export * from "./codec.js";
export * from "./wire.js";
export * from "./caller.js";
export * from "./node.js";
