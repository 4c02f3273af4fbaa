#!/usr/bin/env node
// End-to-end check of the sessionplane MCP server with the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk): a client nobody in this repo
// wrote, talking to the real binary over stdio.
//
// Usage:
//   node e2e/sdk_client.mjs [--observer] [--protocol-version V] <bin> [<db>] [server args...]
//
//   <bin>   the sessionplane binary (default: $SESSIONPLANE_BIN when no
//           positional arguments are given)
//   <db>    the SQLite file passed as --db (default: $SESSIONPLANE_DB, else a
//           new file in a temporary directory)
//   server args are appended after --db <db> (e.g. --preset x --config f.toml).
//
// Default mode runs every check twice: once as the SDK connects by default,
// once with the initialize request pinned to protocol version 2025-11-25
// (or --protocol-version V). It prints one "ok - ..." / "not ok - ..." line
// per check, then "sdk client: N passed, M failed", and exits 1 if any check
// failed.
//
// --observer: connect, list the tools, print their names as a sorted JSON
// array on one stdout line, and exit (used by policy tests). Only that line
// goes to stdout; the server's log goes to stderr.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema, LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const READ_TOOLS = ["sessions_list", "sessions_history", "sessions_search", "session_status", "agents_list"];
const MAIN_KEY = "agent:main:main";
const MAIN_URI = `session://${MAIN_KEY}`;
const PINNED_DEFAULT = "2025-11-25";

function usage(msg) {
  if (msg) console.error(`sdk_client: ${msg}`);
  console.error("usage: node e2e/sdk_client.mjs [--observer] [--protocol-version V] <bin> [<db>] [server args...]");
  process.exit(2);
}

function parseArgs(argv) {
  const o = { observer: false, pinned: PINNED_DEFAULT, positional: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--observer") o.observer = true;
    else if (a === "--protocol-version") {
      if (i + 1 >= argv.length) usage("--protocol-version needs a value");
      o.pinned = argv[++i];
    } else if (a.startsWith("--protocol-version=")) o.pinned = a.slice("--protocol-version=".length);
    else if (a === "-h" || a === "--help") usage();
    else if (a === "--") { i++; break; }
    else break;
  }
  o.positional = argv.slice(i);
  let rest = o.positional;
  if (rest.length > 0) {
    o.bin = rest[0];
    rest = rest.slice(1);
  } else {
    o.bin = process.env.SESSIONPLANE_BIN;
  }
  if (!o.bin) usage("no binary: pass it as the first argument or set SESSIONPLANE_BIN");
  if (rest.length > 0 && !rest[0].startsWith("-")) {
    o.db = rest[0];
    rest = rest.slice(1);
  } else {
    o.db = process.env.SESSIONPLANE_DB || join(mkdtempSync(join(tmpdir(), "sessionplane-e2e-")), "sessionplane.db");
  }
  o.extra = rest;
  return o;
}

// PinnedTransport wraps a transport: it rewrites the protocolVersion of the
// initialize request when a version is pinned (SDK 1.x always offers its
// LATEST_PROTOCOL_VERSION and has no option for it) and records the version
// the server negotiated (the Client hands it to setProtocolVersion).
class PinnedTransport {
  constructor(inner, version) {
    this.inner = inner;
    this.version = version;
    this.negotiated = undefined;
    this.offered = undefined;
  }
  get sessionId() { return this.inner.sessionId; }
  get onmessage() { return this.inner.onmessage; }
  set onmessage(fn) { this.inner.onmessage = fn; }
  get onclose() { return this.inner.onclose; }
  set onclose(fn) { this.inner.onclose = fn; }
  get onerror() { return this.inner.onerror; }
  set onerror(fn) { this.inner.onerror = fn; }
  start() { return this.inner.start(); }
  close() { return this.inner.close(); }
  send(message, options) {
    if (message && message.method === "initialize") {
      if (this.version) {
        message = { ...message, params: { ...message.params, protocolVersion: this.version } };
      }
      this.offered = message.params.protocolVersion;
    }
    return this.inner.send(message, options);
  }
  setProtocolVersion(v) { this.negotiated = v; }
}

function connectTo(o, version) {
  const inner = new StdioClientTransport({
    command: o.bin,
    args: ["--db", o.db, ...o.extra],
    stderr: "inherit",
  });
  const transport = new PinnedTransport(inner, version);
  const client = new Client({ name: "sessionplane-e2e-sdk", version: "0.0.0" }, { capabilities: {} });
  return { client, transport };
}

function short(v, n = 600) {
  let s;
  try { s = typeof v === "string" ? v : JSON.stringify(v); } catch { s = String(v); }
  return s.length > n ? s.slice(0, n) + "…" : s;
}

function textOf(result) {
  return (result?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
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

// call invokes a tool the way applications do (Client.callTool, which also
// validates structuredContent against the tool's outputSchema). If that
// throws, it repeats the request without the SDK's output validation so the
// failure report can show what the server actually sent.
async function call(client, name, args) {
  try {
    return { result: await client.callTool({ name, arguments: args }) };
  } catch (error) {
    let raw;
    try {
      raw = await client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema);
    } catch (e2) {
      raw = { requestFailed: String(e2?.message ?? e2) };
    }
    return { error, raw };
  }
}

async function runSuite(o, tag, version) {
  const p = (s) => `[${tag}] ${s}`;
  const { client, transport } = connectTo(o, version);
  try {
    try {
      await client.connect(transport);
    } catch (e) {
      check(p("initialize"), false, `${e?.message ?? e} (bin ${o.bin})`);
      return;
    }
    check(p(`initialize (offered ${transport.offered}, negotiated ${transport.negotiated})`),
      !!client.getServerVersion()?.name, `serverInfo ${short(client.getServerVersion())}`);
    if (version) {
      check(p(`server accepted pinned protocol version ${version}`), transport.negotiated === version,
        `server answered ${transport.negotiated}`);
    }

    // tools/list
    let tools = [];
    try {
      tools = (await client.listTools()).tools;
      check(p(`listTools returned ${tools.length} tools`), tools.length > 0, "no tools");
    } catch (e) {
      check(p("listTools"), false, e?.message ?? String(e));
    }
    for (const name of READ_TOOLS) {
      const t = tools.find((x) => x.name === name);
      if (!check(p(`tool ${name} is listed`), !!t, `tools: ${tools.map((x) => x.name).join(", ")}`)) continue;
      const problems = [];
      if (!t.inputSchema || t.inputSchema.type !== "object") problems.push("inputSchema missing or not an object schema");
      if (!t.outputSchema || t.outputSchema.type !== "object") problems.push("outputSchema missing or not an object schema");
      if (typeof t.description !== "string" || t.description.trim() === "") problems.push("no description");
      if (t.annotations?.readOnlyHint !== true) problems.push(`annotations.readOnlyHint is ${short(t.annotations?.readOnlyHint)}`);
      check(p(`tool ${name} has inputSchema, outputSchema, description, readOnlyHint=true`), problems.length === 0, problems.join("; "));
    }

    // tools/call on each read tool
    const calls = [
      ["sessions_list", {}],
      ["sessions_history", { key: "main" }],
      ["sessions_search", { query: "anything" }],
      ["session_status", {}],
      ["agents_list", {}],
    ];
    for (const [name, args] of calls) {
      const label = p(`callTool ${name} ${JSON.stringify(args)} succeeds with structuredContent`);
      const r = await call(client, name, args);
      if (r.error) {
        check(label, false, `SDK error: ${r.error.message}; server sent ${short(r.raw)}`);
        continue;
      }
      const res = r.result;
      const problems = [];
      if (res.isError) problems.push(`isError: ${short(textOf(res))}`);
      if (!res.structuredContent || typeof res.structuredContent !== "object") problems.push("no structuredContent");
      check(label, problems.length === 0, problems.join("; "));
    }

    // resources
    try {
      const { resources } = await client.listResources();
      check(p(`listResources includes ${MAIN_URI}`), resources.some((r) => r.uri === MAIN_URI),
        `uris: ${resources.map((r) => r.uri).join(", ")}`);
    } catch (e) {
      check(p("listResources"), false, e?.message ?? String(e));
    }
    try {
      const rr = await client.readResource({ uri: MAIN_URI });
      const c = rr.contents?.find((x) => x.uri === MAIN_URI) ?? rr.contents?.[0];
      let doc;
      try {
        doc = JSON.parse(c?.text ?? "");
      } catch (e) {
        check(p(`readResource ${MAIN_URI} is JSON`), false, `${e.message}: ${short(c)}`);
      }
      if (doc !== undefined) {
        check(p(`readResource ${MAIN_URI} is JSON with session.key === "${MAIN_KEY}"`), doc?.session?.key === MAIN_KEY,
          `session.key = ${short(doc?.session?.key)}`);
      }
    } catch (e) {
      check(p(`readResource ${MAIN_URI}`), false, e?.message ?? String(e));
    }

    // errors are tool results with isError, and their text says what was wrong
    const bad = [
      [{ key: "main", limit: 5000 }, "limit", "an out-of-range argument"],
      [{ bogus: 1 }, "bogus", "an unknown argument"],
      [{ key: "agent:nope:main" }, "agent:nope:main", "an unknown session key"],
    ];
    for (const [args, needle, what] of bad) {
      const r = await call(client, "sessions_history", args);
      const label = p(`callTool sessions_history ${JSON.stringify(args)} (${what}) returns isError:true through the SDK`);
      let res = r.result;
      if (r.error) {
        check(label, false, `SDK error: ${r.error.message}; server sent ${short(r.raw)}`);
        res = r.raw && !r.raw.requestFailed ? r.raw : undefined;
      } else {
        check(label, res.isError === true, `isError is ${short(res.isError)}: ${short(res)}`);
      }
      const text = textOf(res);
      check(p(`sessions_history ${JSON.stringify(args)} error text mentions "${needle}"`),
        res?.isError === true && text.includes(needle), `response ${short(res ?? r.raw)}`);
    }
  } finally {
    try { await client.close(); } catch { /* already closed */ }
  }
}

async function observer(o) {
  const { client, transport } = connectTo(o, undefined);
  try {
    await client.connect(transport);
    const { tools } = await client.listTools();
    console.log(JSON.stringify(tools.map((t) => t.name).sort()));
  } finally {
    try { await client.close(); } catch { /* already closed */ }
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.observer) {
    await observer(o);
    return 0;
  }
  console.log(`# sessionplane ${o.bin} --db ${o.db}${o.extra.length ? " " + o.extra.join(" ") : ""}`);
  console.log(`# run 1: SDK default (offers ${LATEST_PROTOCOL_VERSION})`);
  await runSuite(o, "sdk-default", undefined);
  console.log(`# run 2: initialize pinned to protocol version ${o.pinned}`);
  await runSuite(o, `pinned-${o.pinned}`, o.pinned);
  console.log(`sdk client: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => { process.exitCode = code; },
  (e) => {
    console.error(`sdk_client: fatal: ${e?.stack ?? e}`);
    if (!process.argv.includes("--observer")) console.log(`sdk client: ${passed} passed, ${failed + 1} failed`);
    process.exitCode = 1;
  },
);
