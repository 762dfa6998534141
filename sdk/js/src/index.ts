export * from "./errors.js";
export * from "./codec.js";
export * from "./wire.js";
export * from "./node.js";
