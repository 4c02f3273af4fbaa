#!/usr/bin/env node
// The official MCP TypeScript SDK's Streamable HTTP client against several
// sessionplane --http instances behind a load balancer with no session
// affinity (the Go test lb_e2e_test.go starts them, the proxy, and kills
// the instance holding the in-flight call).
//
// Usage:
//   node e2e/sdk_lb.mjs <url> <token>
//
// It connects through <url>, calls tools (which land on several
// instances), then starts a blocking spawn_agent with the task "slow
// analysis sdk" that never answers: the test kills the instance running it.
// The call must fail with a transport error; the same session must then go
// on (sessions_list lists the child the spawn committed) and end with
// DELETE. Prints one "ok - ..." / "not ok - ..." line per check, then
// "sdk lb: N passed, M failed", and exits 1 if any check failed.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error("usage: node e2e/sdk_lb.mjs <url> <token>");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail ? ": " + detail : ""}`);
  }
}
const short = (v) => JSON.stringify(v)?.slice(0, 300);
const textOf = (res) => (res?.content ?? []).map((c) => c.text ?? "").join("");

const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
const client = new Client({ name: "sessionplane-e2e-lb", version: "0.0.0" }, { capabilities: {} });
try {
  await client.connect(transport);
  const sid = transport.sessionId;
  check("the SDK client connects through the balancer and gets a session id", typeof sid === "string" && sid.length > 0, String(sid));
  let ok = true;
  for (let i = 0; i < 4; i++) {
    const res = await client.callTool({ name: "session_status", arguments: { key: "current" } });
    ok &&= !res.isError && res.structuredContent?.key === "agent:main:main";
  }
  check("tool calls spread over the instances all succeed on one session", ok);

  let err;
  try {
    const res = await client.callTool({ name: "spawn_agent", arguments: { task: "slow analysis sdk" } }, undefined, { timeout: 120000 });
    err = new Error("the call returned: " + short(res));
    check("the call in flight on the killed instance fails", false, String(err));
  } catch (e) {
    err = e;
    check("the call in flight on the killed instance fails with a transport error", true);
  }
  console.error(`sdk_lb: the client saw: ${err}`);

  const list = await client.callTool({ name: "sessions_list", arguments: {} });
  check("a retry on the same session goes on through the survivor", !list.isError && transport.sessionId === sid, short(list));
  const children = (list.structuredContent?.sessions ?? []).filter((s) => s.kind === "subagent");
  check("the spawn committed before the kill is what the store shows", children.length === 1, short(list.structuredContent));

  await transport.terminateSession();
  const after = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", Authorization: `Bearer ${token}`, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list", params: {} }),
  });
  await after.text();
  check("after DELETE through the balancer the session id gets 404", after.status === 404, String(after.status));
  console.log(`session ${sid}`);
} catch (e) {
  check("the flow ran without throwing", false, String(e?.stack ?? e));
} finally {
  await client.close().catch(() => {});
}
console.log(`sdk lb: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
