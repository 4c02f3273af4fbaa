// The web dashboard in a real browser: Debian's chromium driven by
// playwright-core, against `sessionplane ui` processes on a seeded database,
// with spawns made live through a real MCP client (the TypeScript SDK over
// stdio, a separate sessionplane process writing the same database).
//
//   node e2e/dashboard.mjs <params.json>
//
// params: {full, restricted (dashboard addresses with ?token=), bin, db,
//          config, shots (directory for screenshots), hidden (a marker in
//          every name of the sessions the restricted viewer may not read),
//          chromium (executable path)}
// Prints "ok - ..." per check and "dashboard browser: N passed, M failed".
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const params = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(params.shots, { recursive: true });

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
// step runs one check that waits on the page; a timeout fails the check
// (with what the page showed) instead of the whole script.
async function step(label, fn) {
  try {
    await fn();
    return check(label, true);
  } catch (e) {
    return check(label, false, String(e.message || e).split("\n")[0]);
  }
}
const WAIT = { timeout: 30000 };

const browser = await chromium.launch({
  executablePath: params.chromium,
  headless: true,
  // Playwright gives every launch a fresh temporary --user-data-dir.
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

let client;
try {
  await run();
} catch (e) {
  check("the script ran to its end", false, e.stack || String(e));
} finally {
  if (client) await client.close().catch(() => {});
  await browser.close();
}
console.log(`dashboard browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

async function run() {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
  const page = await desktop.newPage();
  const offsite = [];
  page.on("request", (req) => { if (!req.url().startsWith(new URL(params.full).origin)) offsite.push(req.url()); });

  // --- sign in with the printed address; the token leaves the address bar
  await page.goto(params.full);
  await step("the printed address signs in and drops the token from the address bar", async () => {
    await page.waitForSelector("#sessions-table tr[data-key]", WAIT);
    if (page.url().includes("token=")) throw new Error("address still holds the token: " + page.url());
  });
  const keys = await page.$$eval("#sessions-table tr[data-key]", (rows) => rows.map((r) => r.dataset.key));
  check("the sessions list shows the seeded sessions", keys.includes("agent:main:main") && keys.includes("agent:main:subagent:research1"), JSON.stringify(keys));
  await step("the list shows kind, agent, status, activity, tokens and cost", async () => {
    const row = page.locator('#sessions-table tr[data-key="agent:main:subagent:research1"]');
    const text = await row.innerText();
    for (const want of ["subagent", "main", "done", "ago", "$"]) if (!text.includes(want)) throw new Error(`row lacks ${want}: ${text}`);
  });

  // --- filter, then full-text search
  await page.fill("#filter", "research");
  await step("the filter narrows the list", async () => {
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#sessions-table tr[data-key]")];
      return rows.length > 0 && rows.every((r) => r.dataset.key.includes("research") || r.innerText.toLowerCase().includes("research"));
    }, null, WAIT);
  });
  await page.fill("#filter", "");
  await page.fill("#search", "zebra");
  await page.press("#search", "Enter");
  await step("full-text search finds messages (sessions_search)", async () => {
    await page.waitForSelector("#search-results li.hit", WAIT);
  });
  const hitKeys = await page.$$eval("#search-results li.hit", (els) => els.map((e) => e.dataset.key));
  check("search hits name visible sessions", hitKeys.includes("agent:main:subagent:research1"), JSON.stringify(hitKeys));
  await page.screenshot({ path: join(params.shots, "desktop-sessions.png"), fullPage: true });

  // --- keyboard: skip link first, then the views by Tab and Enter
  await page.goto(new URL("#/sessions", page.url()).href);
  await page.reload(); // focus starts at the top of the document
  await page.waitForSelector("#sessions-table tr[data-key]", WAIT);
  await page.keyboard.press("Tab");
  const first = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  check("the first Tab reaches the skip link", first === "Skip to content", first);
  await page.keyboard.press("Tab"); // brand
  await page.keyboard.press("Tab"); // Sessions
  await page.keyboard.press("Tab"); // Run tree
  await page.keyboard.press("Enter");
  await step("the run tree opens from the keyboard", async () => {
    await page.waitForSelector("#tree", WAIT);
    if (!page.url().endsWith("#/tree")) throw new Error(page.url());
  });

  // --- the seeded tree: requester → child → grandchild
  await step("the tree nests requester → child → grandchild", async () => {
    await page.waitForSelector('ul.tree > li > .node[data-key="agent:main:main"] + ul > li > .node[data-key="agent:main:subagent:research1"] + ul > li > .node[data-key="agent:main:subagent:research1:subagent:sum1"]', WAIT);
  });
  await step("a node shows state, runtime, model, tokens, cost and the latest step", async () => {
    const text = (await page.locator('.node[data-key="agent:main:subagent:research1"]').innerText()).toLowerCase();
    for (const want of ["ok", "runtime", "demo/scripted", "tokens", "cost", "$", "model said"]) if (!text.includes(want)) throw new Error(`node lacks ${want}: ${text}`);
  });

  // --- live: spawn through a real MCP client in another process
  client = new Client({ name: "dashboard-e2e", version: "0.0.0" }, { capabilities: {} });
  await client.connect(new StdioClientTransport({ command: params.bin, args: ["--db", params.db, "--config", params.config], stderr: "inherit" }));
  const slow = await client.callTool({ name: "sessions_spawn", arguments: { task: "slow: watch the build", label: "watcher" } });
  const slowKey = slow.structuredContent?.childSessionKey;
  const slowRun = slow.structuredContent?.runId;
  check("sessions_spawn accepted the slow child", slow.structuredContent?.status === "accepted" && !!slowKey, JSON.stringify(slow.structuredContent));
  await step("the new child appears running in the open tree, without a reload", async () => {
    await page.waitForSelector(`.node[data-key="${slowKey}"][data-state="running"]`, WAIT);
  });
  const quick = await client.callTool({ name: "sessions_spawn", arguments: { task: "quick: add the numbers", label: "quick" } });
  const quickKey = quick.structuredContent?.childSessionKey;
  await step("a second child runs to ok live", async () => {
    await page.waitForSelector(`.node[data-key="${quickKey}"][data-state="ok"]`, WAIT);
  });
  await step("the running child's runtime ticks in the page", async () => {
    const sel = `.node[data-key="${slowKey}"] .ticking`;
    const before = await page.locator(sel).innerText();
    await page.waitForFunction(([s, b]) => { const el = document.querySelector(s); return el && el.textContent !== b; }, [sel, before], WAIT);
  });
  await page.screenshot({ path: join(params.shots, "desktop-tree.png"), fullPage: true });
  await client.callTool({ name: "cancel_spawn", arguments: { task_id: slowRun } });
  await step("killing the child turns it killed live", async () => {
    await page.waitForSelector(`.node[data-key="${slowKey}"][data-state="killed"]`, WAIT);
  });

  // --- transcript: the announce arrives in the requester's transcript, links to the child
  await page.click('.node[data-key="agent:main:main"] a.node-name');
  await step("no stray text in the session header", async () => {
    await page.waitForSelector("#session-head h1", WAIT);
    const t = await page.locator("#session-head").innerText();
    if (/\bnull\b|\bundefined\b/.test(t)) throw new Error(t);
  });
  await step("the requester's transcript shows the quick child's announce", async () => {
    await page.waitForSelector(`li.msg.announce a.child-link[href="#/s/${encodeURIComponent(quickKey)}"]`, WAIT);
  });
  await page.click(`li.msg.announce a.child-link[href="#/s/${encodeURIComponent(quickKey)}"]`);
  await step("the child's transcript opens from the announce", async () => {
    await page.waitForFunction((k) => document.querySelector("#session-head .key")?.textContent === k, quickKey, WAIT);
    await page.waitForSelector("li.msg.role-assistant", WAIT);
  });
  await page.goto(new URL("#/s/" + encodeURIComponent("agent:main:subagent:research1"), page.url()).href);
  await step("a transcript lists messages in seq order", async () => {
    await page.waitForSelector("li.msg[data-seq]", WAIT);
    const seqs = await page.$$eval("li.msg[data-seq]", (els) => els.map((e) => Number(e.dataset.seq)));
    if (seqs.length < 4 || seqs.some((s, i) => s !== i + 1)) throw new Error(JSON.stringify(seqs));
  });
  await step("tool calls and results are folded, and open from the keyboard", async () => {
    const d = page.locator("details.tool.call").first();
    if (await d.evaluate((el) => el.open)) throw new Error("tool call starts open");
    await d.locator("summary").focus();
    await page.keyboard.press("Enter");
    if (!(await d.evaluate((el) => el.open))) throw new Error("Enter did not open it");
  });
  await step("untrusted content is visibly marked", async () => {
    const n = await page.locator("li.msg.untrusted .trust.warn").count();
    const r = await page.locator("details.tool.result .warn").count();
    if (n < 1 || r < 1) throw new Error(`untrusted marks: ${n} messages, ${r} results`);
  });
  await step("a tool result's markup is shown as text, not run", async () => {
    const txt = await page.locator("details.tool.result pre").first().textContent();
    if (!txt.includes("<img")) throw new Error(txt);
    if (await page.evaluate(() => window.__xss === true)) throw new Error("the script ran");
  });
  await page.locator("details.tool.result").first().evaluate((el) => { el.open = true; });
  await page.screenshot({ path: join(params.shots, "desktop-transcript.png"), fullPage: true });

  // --- cost and activity
  await page.goto(new URL("#/stats", page.url()).href);
  await step("cost and activity draws its charts", async () => {
    await page.waitForSelector("figure.chart svg rect.bar", WAIT);
    const n = await page.locator("figure.chart").count();
    if (n < 5) throw new Error(`${n} charts`);
  });
  await page.screenshot({ path: join(params.shots, "desktop-stats.png"), fullPage: true });
  check("no request left the dashboard's origin", offsite.length === 0, JSON.stringify(offsite));

  // --- phone size
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const p2 = await phone.newPage();
  await p2.goto(params.full);
  await step("the phone layout shows the sessions as cards", async () => {
    await p2.waitForSelector("#sessions-table tr[data-key]", WAIT);
    const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`page is ${overflow}px wider than the phone`);
  });
  await p2.screenshot({ path: join(params.shots, "phone-sessions.png") });
  await p2.goto(new URL("#/tree", p2.url()).href);
  await step("the phone shows the run tree without sideways scrolling", async () => {
    await p2.waitForSelector(`.node[data-key="${quickKey}"]`, WAIT);
    const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`page is ${overflow}px wider than the phone`);
  });
  await p2.screenshot({ path: join(params.shots, "phone-tree.png") });
  await p2.goto(new URL("#/s/" + encodeURIComponent("agent:main:main"), p2.url()).href);
  await step("the phone shows the requester's transcript with the announces", async () => {
    await p2.waitForSelector("li.msg.announce", WAIT);
    await p2.locator("li.msg.announce").last().scrollIntoViewIfNeeded();
  });
  await p2.screenshot({ path: join(params.shots, "phone-transcript.png") });
  await p2.goto(new URL("#/stats", p2.url()).href);
  await p2.waitForSelector("figure.chart svg", WAIT).catch(() => {});
  await p2.screenshot({ path: join(params.shots, "phone-stats.png") });

  // --- a restricted principal: nothing of the hidden agent, anywhere
  const restricted = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "dark" });
  await restricted.addInitScript(() => {
    // Record every event the page receives.
    const Orig = window.EventSource;
    window.__sse = [];
    class Recording extends Orig {
      constructor(url, init) {
        super(url, init);
        for (const name of ["view", "failure"]) this.addEventListener(name, (e) => window.__sse.push(e.data));
      }
    }
    window.EventSource = Recording;
  });
  const p3 = await restricted.newPage();
  const bodies = [];
  p3.on("response", async (res) => {
    if (res.url().includes("/api/")) bodies.push({ url: res.url(), body: await res.text().catch(() => "") });
  });
  const html = [];
  await p3.goto(params.restricted);
  await p3.waitForSelector("#sessions-table tr[data-key]", WAIT);
  html.push(await p3.content());
  await p3.fill("#search", "zebra");
  await p3.press("#search", "Enter");
  await step("the restricted viewer's search finds its own sessions", async () => {
    await p3.waitForSelector("#search-results li.hit", WAIT);
  });
  html.push(await p3.content());
  for (const [view, ready] of [["#/tree", ".node"], ["#/stats", "figure.chart"], ["#/s/" + encodeURIComponent("agent:main:main"), "li.msg"]]) {
    await p3.goto(new URL(view, p3.url()).href);
    await p3.waitForSelector(ready, WAIT);
    html.push(await p3.content());
    if (view === "#/tree") await p3.screenshot({ path: join(params.shots, "desktop-restricted-tree.png") });
  }
  await p3.goto(new URL("#/s/" + encodeURIComponent(`agent:${params.hidden}:main`), p3.url()).href);
  await step("opening a hidden session by its key shows no content", async () => {
    await p3.waitForSelector(".error", WAIT);
  });
  html.push(await p3.content());
  const sse = await p3.evaluate(() => window.__sse);
  const leaks = [];
  for (const h of html) if (h.includes(params.hidden)) leaks.push("page HTML");
  for (const b of bodies) if (b.body.includes(params.hidden)) leaks.push(b.url);
  for (const d of sse) if (d.includes(params.hidden)) leaks.push("event: " + d.slice(0, 120));
  check(`the restricted viewer sees no hidden session (${html.length} pages, ${bodies.length} API answers, ${sse.length} events)`,
    leaks.length === 0 && bodies.length >= 2 && sse.length >= 3, JSON.stringify(leaks));
  const full = await page.evaluate(async () => (await fetch("api/sessions?archived=1")).text());
  check("the unrestricted viewer does see the other agent's sessions", full.includes(params.hidden));
}
