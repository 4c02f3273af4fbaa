// End-to-end flows with the official TypeScript SDK client (StdioClientTransport)
// against the built sessionplane binary:
//
//   node e2e/sdk_flows.mjs observer    <bin> <db> --config <observer config>
//   node e2e/sdk_flows.mjs spawn       <bin> <db> --config <scripted config>
//   node e2e/sdk_flows.mjs coordinator <bin> <db> --config <scripted config>
//   node e2e/sdk_flows.mjs http        <bin> <db> [server args...]
//
// observer: with an observer preset, tools/list shows only the allowed tools
//   and a forbidden call returns a readable refusal.
// spawn: sessions_spawn → spawn_result (wait) → the announce arrives as a
//   prefix of the next tool result, exactly once.
// coordinator: seed 000's flow: sessions_list → sessions_search →
//   sessions_history → sessions_send → task_list.
// http: the server started with --http on loopback and
//   $SESSIONPLANE_HTTP_TOKEN; the SDK's StreamableHTTPClientTransport sends
//   the token in requestInit.headers; without it (or with another) the
//   server answers 401 with WWW-Authenticate: Bearer, a terminated
//   session's id gets 404.
// Prints "ok - ..." per check and a final "sdk flows <name>: N passed, M failed".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";

const [flow, bin, db, ...extra] = process.argv.slice(2);
if (!flow || !bin || !db) {
  console.error("usage: node e2e/sdk_flows.mjs observer|spawn|coordinator <bin> <db> [server args...]");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(label, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok - ${label}`);
  } else {
    failed++;
    console.log(`not ok - ${label}${detail ? ": " + detail : ""}`);
  }
  return ok;
}
const textOf = (r) => (r?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
const short = (v, n = 500) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s.length > n ? s.slice(0, n) + "…" : s; };

async function connect() {
  const transport = new StdioClientTransport({ command: bin, args: ["--db", db, ...extra], stderr: "inherit" });
  const client = new Client({ name: "sessionplane-e2e-flows", version: "0.0.0" }, { capabilities: {} });
  await client.connect(transport);
  return client;
}

async function observerFlow(client) {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  const want = ["session_status", "sessions_history", "sessions_list", "sessions_search"];
  check("observer tools/list shows only the allowed tools", JSON.stringify(names) === JSON.stringify(want), JSON.stringify(names));
  const denied = await client.callTool({ name: "sessions_spawn", arguments: { task: "x" } });
  const t = textOf(denied);
  check("a tool outside the preset is refused (isError)", denied.isError === true, short(denied));
  check("the refusal is readable: rule and config key", t.includes("forbidden") && t.includes("tools.allow") && t.includes("agents.presets.observer"), t);
  check("the refusal is structured", denied.structuredContent?.status === "forbidden" && denied.structuredContent?.rule === "tools.allow", short(denied.structuredContent));
  const outside = await client.callTool({ name: "sessions_history", arguments: { key: "agent:main:notes" } });
  check("a session outside key_prefix is refused with rule sessions.key_prefix",
    outside.isError === true && outside.structuredContent?.rule === "sessions.key_prefix", short(outside));
  const list = await client.callTool({ name: "sessions_list", arguments: {} });
  const keys = (list.structuredContent?.sessions ?? []).map((s) => s.key);
  check("sessions_list hides sessions outside the prefix and says nothing of them",
    !keys.includes("agent:main:notes") && list.structuredContent?.filtered === undefined &&
    !JSON.stringify(list.content).includes("hidden"), short(list.structuredContent));
}

async function spawnFlow(client) {
  const spawned = await client.callTool({ name: "sessions_spawn", arguments: { task: "summarise the release notes", label: "notes" } });
  const sc = spawned.structuredContent ?? {};
  check("sessions_spawn is accepted at once", sc.status === "accepted" && sc.runId && sc.childSessionKey?.startsWith("agent:main:subagent:"), short(spawned));
  const result = await client.callTool({ name: "spawn_result", arguments: { task_id: sc.runId, wait_seconds: 60 } });
  // SDK_FLOWS_EXPECT_TEXT pins the answer of the test's scripted config;
  // with any other config (testdata/demo.toml, a real model) any answer does.
  const expect = process.env.SDK_FLOWS_EXPECT_TEXT;
  const answer = result.structuredContent?.text ?? "";
  check("spawn_result waits for the child and returns its answer",
    result.structuredContent?.status === "ok" && (expect ? answer === expect : answer.length > 0), short(result.structuredContent));
  check("spawn_result shows the announce with its stats line", (result.structuredContent?.announce ?? "").includes("Stats: runtime"), short(result.structuredContent));
  let prefixes = 0;
  const count = (r) => { const items = r.content ?? []; for (const c of items.slice(0, -1)) if (c.type === "text" && c.text.includes("[announce]")) prefixes++; };
  count(result);
  for (let i = 0; i < 3; i++) count(await client.callTool({ name: "sessions_list", arguments: {} }));
  // spawn_result showed the announce, so it is not put in front of a later result too.
  check("the announce reached the client once (in spawn_result, never again as a prefix)", prefixes === 0, `seen ${prefixes} more times`);
  const child = await client.callTool({ name: "sessions_history", arguments: { key: sc.childSessionKey } });
  check("the child's transcript is readable", (child.structuredContent?.messages ?? []).length >= 2, short(child.structuredContent));
}

async function coordinatorFlow(client) {
  // Workers exist first: a specialist session created by a send.
  const seeded = await client.callTool({ name: "sessions_send", arguments: { key: "agent:coder:main-worker", message: "Remember: the API uses JWT checkpoints." } });
  check("a specialist session is created by sending to it", seeded.structuredContent?.status === "ok" && seeded.structuredContent?.created === true, short(seeded.structuredContent));
  const list = await client.callTool({ name: "sessions_list", arguments: {} });
  check("1. sessions_list discovers the worker", (list.structuredContent?.sessions ?? []).some((s) => s.key === "agent:coder:main-worker"), short(list.structuredContent));
  const search = await client.callTool({ name: "sessions_search", arguments: { query: "JWT checkpoints" } });
  check("2. sessions_search finds prior related work", (search.structuredContent?.hits ?? []).some((h) => h.key === "agent:coder:main-worker"), short(search.structuredContent));
  const hist = await client.callTool({ name: "sessions_history", arguments: { key: "agent:coder:main-worker" } });
  check("3. sessions_history inspects its progress", (hist.structuredContent?.messages ?? []).length >= 2, short(hist.structuredContent));
  const sent = await client.callTool({ name: "sessions_send", arguments: { key: "agent:coder:main-worker", message: "Please implement JWT middleware", wait_for_reply: true, context: "coordinator" } });
  check("4. sessions_send dispatches the next task and gets the reply", sent.structuredContent?.status === "ok" && (sent.structuredContent?.reply ?? "").length > 0, short(sent.structuredContent));
  const created = await client.callTool({ name: "task_list", arguments: { action: "create", list: "sprint", title: "JWT middleware" } });
  check("5. task_list tracks the work item", !created.isError, short(created));
  const tasks = await client.callTool({ name: "task_list", arguments: { action: "list", list: "sprint" } });
  check("5. task_list lists it", textOf(tasks).includes("JWT middleware"), short(tasks));
}

// startHTTP starts the server on a free loopback port with token in
// $SESSIONPLANE_HTTP_TOKEN and resolves with its /mcp URL.
function startHTTP(token) {
  const proc = spawn(bin, ["--http", "127.0.0.1:0", "--db", db, ...extra], {
    env: { ...process.env, SESSIONPLANE_HTTP_TOKEN: token },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server logged no url within 30 s")), 30000);
    createInterface({ input: proc.stderr }).on("line", (line) => {
      process.stderr.write(line + "\n");
      const m = line.match(/url=(http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`the server exited (${code}) before serving`)));
  });
  return { proc, url };
}

async function rawInitialize(url, headers) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "0" } } }),
  });
  await res.text();
  return res;
}

async function httpFlow() {
  const token = randomBytes(24).toString("hex");
  const { proc, url: urlP } = startHTTP(token);
  let client;
  try {
    const url = await urlP;
    const bare = await rawInitialize(url, {});
    check("a request without a token gets 401 with WWW-Authenticate: Bearer",
      bare.status === 401 && (bare.headers.get("www-authenticate") ?? "").startsWith("Bearer"), `${bare.status} ${bare.headers.get("www-authenticate")}`);
    const wrong = await rawInitialize(url, { Authorization: "Bearer " + token.slice(0, -1) });
    check("a request with a wrong token gets 401", wrong.status === 401, String(wrong.status));

    let refused = false;
    const bad = new Client({ name: "sessionplane-e2e-http-bad", version: "0.0.0" }, { capabilities: {} });
    try {
      await bad.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: "Bearer nope" } } }));
    } catch (e) {
      refused = true;
    }
    await bad.close().catch(() => {});
    check("the SDK client with a wrong token cannot connect", refused);

    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    client = new Client({ name: "sessionplane-e2e-http", version: "0.0.0" }, { capabilities: {} });
    await client.connect(transport);
    check("the SDK client with the token connects and gets a session id", typeof transport.sessionId === "string" && transport.sessionId.length > 0, String(transport.sessionId));
    const { tools } = await client.listTools();
    check("tools/list over authenticated HTTP", tools.some((t) => t.name === "sessions_list") && tools.length >= 10, String(tools.length));
    const status = await client.callTool({ name: "session_status", arguments: { key: "current" } });
    check("the principal of the token acts in its own session agent:main:main", status.structuredContent?.key === "agent:main:main", short(status.structuredContent));
    const list = await client.callTool({ name: "sessions_list", arguments: {} });
    check("a tool call over authenticated HTTP succeeds", !list.isError, short(list));

    const sid = transport.sessionId;
    await transport.terminateSession();
    const after = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", Authorization: `Bearer ${token}`, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list", params: {} }),
    });
    await after.text();
    check("a terminated session's id gets 404", after.status === 404, String(after.status));
  } finally {
    await client?.close().catch(() => {});
    proc.kill("SIGTERM");
    await new Promise((resolve) => (proc.exitCode !== null ? resolve() : proc.on("exit", resolve)));
  }
}

const flows = { observer: observerFlow, spawn: spawnFlow, coordinator: coordinatorFlow, http: null };
if (!(flow in flows)) {
  console.error(`unknown flow ${flow}`);
  process.exit(2);
}
let client;
try {
  if (flow === "http") {
    await httpFlow();
  } else {
    client = await connect();
    await flows[flow](client);
  }
} catch (e) {
  check(`flow ${flow} ran without throwing`, false, String(e?.stack ?? e));
} finally {
  await client?.close().catch(() => {});
}
console.log(`sdk flows ${flow}: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
