// sessionplane dashboard: a read-only view of sessions, the run tree,
// transcripts and cost. Plain JavaScript served by the binary itself; every
// piece of data is put into the page as text (never as HTML).
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
let stream = null; // the open EventSource
let clockOffset = 0; // server clock - browser clock (ms)

// ---- helpers ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) if (kid) el.append(kid);
  return el;
}

const fmtInt = new Intl.NumberFormat("en-US");
function tokens(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}
function usd(x) {
  if (!x) return "$0";
  if (x < 0.01) return "$" + x.toFixed(4);
  return "$" + x.toFixed(2);
}
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() + clockOffset - ms) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}
function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
function stamp(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
function sessionHref(key) {
  return "#/s/" + encodeURIComponent(key);
}
function badge(state) {
  return h("span", { class: "badge state-" + state, "data-state": state, text: state });
}
function runtimeOf(run) {
  if (!run || !run.startedAt) return h("span", { class: "muted", text: run && run.state === "queued" ? "waiting" : "—" });
  if (run.endedAt) return h("span", { text: duration(run.endedAt - run.startedAt) });
  return h("span", { class: "ticking", "data-started": run.startedAt, text: duration(Date.now() + clockOffset - run.startedAt) });
}
// put replaces el's children, skipping the null and false ones.
function put(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}
function setLive(text, cls) {
  live.textContent = text;
  live.className = "live " + (cls || "");
}
function showError(msg) {
  main.replaceChildren(h("div", { class: "error", role: "alert" }, h("strong", { text: "Cannot show this view: " }), msg));
}

// ---- data ----

async function api(path) {
  const res = await fetch("api/" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => ({ error: "the server answered " + res.status }));
  if (!res.ok) throw new Error(body.error || "the server answered " + res.status);
  return body;
}

function closeStream() {
  if (stream) {
    stream.close();
    stream = null;
  }
}

// openStream follows one view over Server-Sent Events.
function openStream(params, onView) {
  closeStream();
  const es = new EventSource("events?" + new URLSearchParams(params).toString());
  stream = es;
  setLive("connecting…");
  es.addEventListener("view", (ev) => {
    if (stream !== es) return;
    const v = JSON.parse(ev.data);
    if (v.now) clockOffset = v.now - Date.now();
    setLive("live", "on");
    onView(v);
  });
  es.addEventListener("failure", (ev) => {
    if (stream !== es) return;
    es.close();
    setLive("stopped", "off");
    showError(JSON.parse(ev.data).error);
  });
  es.onerror = () => {
    if (stream !== es) return;
    setLive(es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…", "off");
  };
}

// ---- views ----

const views = {
  sessions: showSessions,
  tree: showTree,
  stats: showStats,
  s: showTranscript,
};

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  const view = views[name] ? name : "sessions";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === view || (view === "s" && a.dataset.nav === "sessions")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  closeStream();
  main.replaceChildren();
  views[view](decodeURIComponent(rest.join("/")));
}

// Sessions: filter, full-text search, and the list.
function showSessions() {
  document.title = "Sessions · sessionplane";
  const state = { q: "", kind: "", status: "", archived: "" };
  const results = h("section", { class: "search-results", "aria-live": "polite", id: "search-results" });
  const table = h("div", { id: "sessions-table" });
  const searchInput = h("input", { type: "search", id: "search", name: "q", placeholder: "words in messages…", autocomplete: "off" });
  const searchForm = h("form", { class: "search", role: "search", onsubmit: async (ev) => {
    ev.preventDefault();
    const q = searchInput.value.trim();
    if (!q) { results.replaceChildren(); return; }
    results.replaceChildren(h("p", { class: "muted", text: "Searching…" }));
    try {
      renderHits(results, await api("search?" + new URLSearchParams({ q })));
    } catch (e) {
      results.replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
    }
  } },
  h("label", { for: "search" }, "Full-text search"),
  h("div", { class: "row" }, searchInput, h("button", { type: "submit", text: "Search" })));

  const follow = () => openStream({ view: "sessions", ...state }, (v) => renderSessions(table, v));
  let debounce = null;
  const onFilter = (field) => (ev) => {
    state[field] = ev.target.type === "checkbox" ? (ev.target.checked ? "1" : "") : ev.target.value;
    clearTimeout(debounce);
    debounce = setTimeout(follow, 250);
  };
  const filters = h("form", { class: "filters", onsubmit: (ev) => ev.preventDefault(), "aria-label": "Filter sessions" },
    h("label", {}, "Key or label", h("input", { type: "text", id: "filter", autocomplete: "off", oninput: onFilter("q") })),
    h("label", {}, "Kind", h("select", { id: "kind", onchange: onFilter("kind") },
      ["", "main", "subagent", "cron", "other"].map((k) => h("option", { value: k, text: k || "any" })))),
    h("label", {}, "Status", h("select", { id: "status", onchange: onFilter("status") },
      ["", "idle", "running", "done", "error", "timeout", "killed", "unknown"].map((k) => h("option", { value: k, text: k || "any" })))),
    h("label", { class: "check" }, h("input", { type: "checkbox", id: "archived", onchange: onFilter("archived") }), "include archived"));
  main.append(h("h1", { text: "Sessions" }), searchForm, results, filters, table);
  follow();
}

function renderHits(el, v) {
  if (!v.hits.length) {
    el.replaceChildren(h("p", { class: "muted", text: `No message matches “${v.query}”.` }));
    return;
  }
  el.replaceChildren(h("h2", { text: `Matches for “${v.query}”` }),
    h("ol", { class: "hits" }, v.hits.map((hit) => h("li", { class: "hit", "data-key": hit.key },
      h("a", { href: sessionHref(hit.key) + "/" + hit.seq }, hit.label || hit.key),
      h("span", { class: "muted" }, ` #${hit.seq} ${hit.role} · agent ${hit.agentId}`),
      h("p", { class: "snippet", text: hit.snippet })))));
}

function renderSessions(el, v) {
  if (!v.sessions.length) {
    el.replaceChildren(h("p", { class: "muted", text: "No session matches." }));
    return;
  }
  const cols = ["Session", "Kind", "Agent", "Status", "Last activity", "Messages", "Tokens", "Cost"];
  const rows = v.sessions.map((s) => h("tr", { "data-key": s.key },
    h("td", { "data-label": "Session" }, h("a", { href: sessionHref(s.key) }, s.label || s.key),
      s.label ? h("div", { class: "key", text: s.key }) : null),
    h("td", { "data-label": "Kind", text: s.kind }),
    h("td", { "data-label": "Agent", text: s.agentId }),
    h("td", { "data-label": "Status" }, badge(s.status), s.archived ? h("span", { class: "muted", text: " archived" }) : null),
    h("td", { "data-label": "Last activity", title: stamp(s.updatedAt), text: ago(s.updatedAt) }),
    h("td", { "data-label": "Messages", class: "num", text: fmtInt.format(s.messageCount) }),
    h("td", { "data-label": "Tokens", class: "num", title: `in ${s.tokens.in} / out ${s.tokens.out}`, text: tokens(s.tokens.total) }),
    h("td", { "data-label": "Cost", class: "num", text: usd(s.costUsd) })));
  put(el, h("table", { class: "list" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows)),
    v.hasMore ? h("p", { class: "muted", text: "More sessions exist: narrow the filter." }) : null);
}

// Run tree: requester → children → grandchildren, live.
function showTree() {
  document.title = "Run tree · sessionplane";
  const box = h("div", { id: "tree" });
  main.append(h("h1", { text: "Run tree" }),
    h("p", { class: "muted", text: "Who spawned or messaged whom, each with its latest run. Updates live as runs start and end." }), box);
  openStream({ view: "tree" }, (v) => {
    const focused = document.activeElement && document.activeElement.getAttribute("href");
    if (!v.roots.length) box.replaceChildren(h("p", { class: "muted", text: "No runs yet. Spawn a sub-agent (sessions_spawn or spawn_agent) and it appears here." }));
    else box.replaceChildren(h("ul", { class: "tree" }, v.roots.map(treeNode)));
    if (focused) { const again = box.querySelector(`a[href="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  });
}

function treeNode(n) {
  const r = n.run;
  const card = h("div", { class: "node state-border-" + (r ? r.state : "none"), "data-key": n.key, "data-state": r ? r.state : "" },
    h("div", { class: "node-head" },
      r ? badge(r.state) : h("span", { class: "badge state-requester", text: n.kind }),
      h("a", { href: sessionHref(n.key), class: "node-name" }, n.label || n.key),
      h("span", { class: "muted" }, " agent ", n.agentId)),
    n.label ? h("div", { class: "key", text: n.key }) : null,
    h("dl", { class: "facts" },
      r ? [h("dt", { text: "runtime" }), h("dd", {}, runtimeOf(r))] : null,
      r ? [h("dt", { text: "model" }), h("dd", { text: r.model || n.model || "—" })] : null,
      h("dt", { text: "tokens" }), h("dd", { title: `in ${n.tokens.in} / out ${n.tokens.out}`, text: tokens(n.tokens.total) }),
      h("dt", { text: "cost" }), h("dd", { text: usd(n.costUsd) }),
      n.runs > 1 ? [h("dt", { text: "runs" }), h("dd", { text: n.runs })] : null),
    n.step ? h("p", { class: "step step-" + n.step.kind },
      h("span", { class: "step-kind", text: stepLabel(n.step.kind) }), " ", n.step.text,
      h("span", { class: "muted", text: " · " + ago(n.step.at) })) : null,
    r && r.note ? h("p", { class: "note", text: r.note }) : null);
  return h("li", {}, card, n.children.length ? h("ul", {}, n.children.map(treeNode)) : null);
}

function stepLabel(kind) {
  return { model: "model said", tool_call: "tool call", tool_result: "tool result", announce: "announce", message: "message" }[kind] || kind;
}

// Transcript of one session, following new messages live.
function showTranscript(arg) {
  const slash = arg.lastIndexOf("/");
  let key = arg;
  let focusSeq = null;
  if (slash > 0 && /^\d+$/.test(arg.slice(slash + 1))) {
    key = arg.slice(0, slash);
    focusSeq = arg.slice(slash + 1);
  }
  document.title = "Transcript · sessionplane";
  const head = h("div", { id: "session-head" });
  const list = h("ol", { class: "transcript", id: "transcript", "aria-label": "Messages in order" });
  const earlier = h("p", { class: "muted", hidden: true, text: "Older messages are not shown (the newest 300 are)." });
  main.append(h("p", {}, h("a", { href: "#/sessions", text: "← all sessions" })), head, earlier, list);
  openStream({ view: "session", key }, (v) => {
    renderSessionHead(head, v);
    if (v.reset) {
      list.replaceChildren();
      earlier.hidden = !v.earlier;
    }
    for (const m of v.messages) list.append(message(m));
    if (v.reset && focusSeq) {
      const el = document.getElementById("m" + focusSeq);
      if (el) { el.classList.add("focus"); el.scrollIntoView({ block: "center" }); el.focus(); }
    }
  });
}

function renderSessionHead(el, v) {
  const s = v.session;
  document.title = (s.label || s.key) + " · sessionplane";
  put(el,
    h("h1", {}, s.label || s.key),
    h("dl", { class: "facts wide" },
      h("dt", { text: "key" }), h("dd", { class: "key", text: s.key }),
      h("dt", { text: "kind" }), h("dd", { text: s.kind }),
      h("dt", { text: "agent" }), h("dd", { text: s.agentId }),
      h("dt", { text: "status" }), h("dd", {}, badge(s.status)),
      s.parentKey ? [h("dt", { text: "parent" }), h("dd", {}, h("a", { href: sessionHref(s.parentKey), text: s.parentKey }))] : null,
      h("dt", { text: "model" }), h("dd", { text: s.model || "—" }),
      h("dt", { text: "tokens" }), h("dd", { text: `${tokens(s.tokens.total)} (in ${tokens(s.tokens.in)} / out ${tokens(s.tokens.out)})` }),
      h("dt", { text: "cost" }), h("dd", { text: usd(s.costUsd) }),
      h("dt", { text: "last activity" }), h("dd", { title: stamp(s.updatedAt), text: ago(s.updatedAt) })),
    v.runs.length ? h("section", {}, h("h2", { text: "Runs in this session" }), runTable(v.runs, false)) : null,
    v.children.length ? h("section", {}, h("h2", { text: "Children" }), runTable(v.children, true)) : null);
}

function runTable(runs, links) {
  return h("table", { class: "list runs" },
    h("thead", {}, h("tr", {}, ["Run", "State", "Runtime", "Model", "Tokens", "Cost"].map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, runs.map((r) => h("tr", { "data-run": r.id, "data-key": r.childKey },
      h("td", { "data-label": "Run" }, links ? h("a", { href: sessionHref(r.childKey) }, r.label || r.childKey) : h("span", { text: r.kind + " " + r.id.slice(0, 8) })),
      h("td", { "data-label": "State" }, badge(r.state)),
      h("td", { "data-label": "Runtime" }, runtimeOf(r)),
      h("td", { "data-label": "Model", text: r.model || "—" }),
      h("td", { "data-label": "Tokens", class: "num", text: tokens(r.tokens.total) }),
      h("td", { "data-label": "Cost", class: "num", text: usd(r.costUsd) })))));
}

const untrusted = new Set(["external_untrusted", "inter_session"]);

function message(m) {
  const isUntrusted = untrusted.has(m.trust);
  const cls = ["msg", "role-" + m.role, "trust-" + m.trust, m.announce ? "announce" : "", isUntrusted ? "untrusted" : ""].join(" ");
  const meta = h("div", { class: "meta" },
    h("span", { class: "seq", text: "#" + m.seq }),
    h("span", { class: "role", text: m.announce ? "announce" : m.role }),
    h("span", { class: "trust" + (isUntrusted ? " warn" : ""), title: "trust class", text: isUntrusted ? "⚠ untrusted · " + m.trust : m.trust }),
    m.tokens.total ? h("span", { class: "muted", text: `${tokens(m.tokens.total)} tokens` }) : null,
    h("time", { class: "muted", datetime: new Date(m.createdAt).toISOString(), text: stamp(m.createdAt) }));
  const body = [];
  if (m.text) body.push(h("div", { class: "text", text: m.text }));
  if (m.announce && m.childKey) body.push(h("p", {}, h("a", { href: sessionHref(m.childKey), class: "child-link" }, "Open the child's transcript →")));
  for (const tc of m.toolCalls || []) {
    body.push(h("details", { class: "tool call" },
      h("summary", {}, "tool call ", h("code", { text: tc.name })),
      h("pre", { text: prettyJSON(tc.args) })));
  }
  for (const tr of m.toolResults || []) {
    body.push(h("details", { class: "tool result untrusted" + (tr.isError ? " failed" : "") },
      h("summary", {}, tr.isError ? "tool error " : "tool result ", h("code", { text: tr.name }), h("span", { class: "warn", text: " ⚠ untrusted" })),
      h("pre", { text: tr.content })));
  }
  if (m.cut) body.push(h("p", { class: "muted", text: "(text cut to 20,000 characters)" }));
  return h("li", { class: cls, id: "m" + m.seq, tabindex: "-1", "data-seq": m.seq }, meta, body);
}

function prettyJSON(s) {
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch { return s; }
}

// Cost and activity: tokens and cost per agent and per day, runs by state.
function showStats() {
  document.title = "Cost & activity · sessionplane";
  const box = h("div", { id: "stats" });
  main.append(h("h1", { text: "Cost & activity" }), box);
  openStream({ view: "stats" }, (v) => {
    put(box,
      h("div", { class: "totals" },
        total("sessions", fmtInt.format(v.total.sessions)),
        total("tokens", tokens(v.total.tokens.total)),
        total("estimated cost", usd(v.total.costUsd))),
      h("div", { class: "charts" },
        chart("Cost per day (runs, last 30 days)", v.days.map((d) => [d.day.slice(5), d.costUsd, usd(d.costUsd)])),
        chart("Tokens per day (runs)", v.days.map((d) => [d.day.slice(5), d.tokens.total, tokens(d.tokens.total)])),
        chart("Cost per agent", v.agents.map((a) => [a.agentId, a.costUsd, usd(a.costUsd)])),
        chart("Tokens per agent", v.agents.map((a) => [a.agentId, a.tokens.total, tokens(a.tokens.total)])),
        chart("Runs by state (last 30 days)", Object.entries(v.runsByState).map(([s, n]) => [s, n, String(n)]), true)));
  });
}

function total(label, value) {
  return h("div", { class: "total" }, h("div", { class: "value", text: value }), h("div", { class: "muted", text: label }));
}

// chart draws horizontal bars as SVG, with the same numbers in a table for
// screen readers.
function chart(title, rows, byState) {
  const fig = h("figure", { class: "chart" }, h("figcaption", { text: title }));
  if (!rows.length) {
    fig.append(h("p", { class: "muted", text: "Nothing yet." }));
    return fig;
  }
  const max = Math.max(...rows.map((r) => r[1]), 0) || 1;
  const rowH = 26;
  const labelW = 96;
  const width = 360;
  const g = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowH}`, role: "img", "aria-label": title, class: "bars" });
  rows.forEach(([label, value, text], i) => {
    const y = i * rowH;
    const w = Math.max(value > 0 ? 2 : 0, ((width - labelW - 70) * value) / max);
    g.append(svg("text", { x: labelW - 6, y: y + 17, "text-anchor": "end", class: "bar-label", text: label.length > 14 ? label.slice(0, 13) + "…" : label }));
    g.append(svg("rect", { x: labelW, y: y + 5, width: w, height: rowH - 10, rx: 3, class: "bar" + (byState ? " state-fill-" + label : "") }));
    g.append(svg("text", { x: labelW + w + 6, y: y + 17, class: "bar-value", text }));
  });
  fig.append(g, h("table", { class: "sr-only" },
    h("tbody", {}, rows.map(([label, , text]) => h("tr", {}, h("th", { scope: "row", text: label }), h("td", { text }))))));
  return fig;
}

// ---- start ----

async function start() {
  try {
    const me = await api("me");
    document.getElementById("who").textContent = `viewing as ${me.key}` + (me.presets.length ? ` (preset ${me.presets.join(", ")})` : "");
  } catch (e) {
    showError(e.message);
    return;
  }
  window.addEventListener("hashchange", route);
  route();
  setInterval(() => {
    for (const el of document.querySelectorAll(".ticking")) {
      el.textContent = duration(Date.now() + clockOffset - Number(el.dataset.started));
    }
  }, 1000);
}

start();
