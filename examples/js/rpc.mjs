// One MPREG request from JavaScript with the plain nats.js client
// (docs/PROTOCOL.md §4): a DAG of commands on mpreg.<cluster>.rpc, in
// JSON, with an id and a budget. Returns the response, parsed.
import { headers } from "nats";

export async function rpc(nc, cluster, idPrefix, cmds, timeoutMs) {
  const request = {
    // Ids should be unique: a cancel on mpreg.<cluster>.cancel names one.
    id: `${idPrefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    cmds,
    timeout_ms: timeoutMs,
    // The deadline too, as an absolute time: a planner that reads the
    // request late runs none of it after we stopped waiting.
    deadline_ms: Date.now() + timeoutMs,
  };
  const h = headers();
  h.set("Content-Type", "application/json");
  const msg = await nc.request(`mpreg.${cluster}.rpc`, JSON.stringify(request), { headers: h, timeout: timeoutMs + 1000 });
  return JSON.parse(new TextDecoder().decode(msg.data));
}
