// kaudit console: a small script over the JSON API (/api/v1/). No framework, no build step.
// Every value from the API is put in the page as text (textContent), never as HTML.
"use strict";

const PRIORITIES = ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"];
const COLORS = { Emergency: "#7a0019", Alert: "#a3001b", Critical: "#c5221f", Error: "#b3261e",
  Warning: "#8a5a00", Notice: "#0b57d0", Informational: "#1e6b3a", Debug: "#4a4f5a" };
const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
const FILTERS = ["priority", "rule", "namespace", "user", "resource", "verb", "source", "origin", "tags", "q"];
const main = document.getElementById("main");
const status = document.getElementById("status");
let liveAbort = null;

// ---- helpers ----
function h(tag, attrs, ...kids) {
  const svg = ["svg", "rect", "g", "line", "text", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}
const badge = (p) => h("span", { class: "badge p-" + p }, p);
const when = (t) => (t ? new Date(t).toLocaleString() : "—");
const say = (m) => { status.textContent = m; };

function token() { return sessionStorage.getItem("kaudit.token") || ""; }
function headers() { const t = token(); return t ? { Authorization: "Bearer " + t } : {}; }

class Unauthorized extends Error {}

async function api(path) {
  const r = await fetch("/api/v1/" + path, { headers: headers() });
  if (r.status === 401) { showLogin(); throw new Unauthorized("token needed"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function showLogin() {
  document.getElementById("login").hidden = false;
  main.hidden = true;
  document.getElementById("token").focus();
}

document.getElementById("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("kaudit.token", document.getElementById("token").value.trim());
  document.getElementById("login").hidden = true;
  main.hidden = false;
  route();
});

function go(url) { history.pushState(null, "", url); route(); }
window.addEventListener("popstate", route);
document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || a.target || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const u = new URL(a.href, location.href);
  if (u.origin === location.origin && u.pathname.startsWith("/ui/")) { e.preventDefault(); go(u.pathname + u.search); }
});

// The API's filter parameters from the page's URL (the range becomes `since`).
function filterParams(extra) {
  const q = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const k of FILTERS) if (q.get(k)) out.set(k, q.get(k));
  const range = RANGES[q.get("range") || "24h"] || 86400;
  out.set("since", new Date(Date.now() - range * 1000).toISOString());
  for (const [k, v] of Object.entries(extra || {})) out.set(k, v);
  return out;
}

function withParam(k, v) {
  const q = new URLSearchParams(location.search);
  if (v) q.set(k, v); else q.delete(k);
  return "/ui/?" + q.toString();
}

// ---- pages ----
async function route() {
  if (liveAbort) { liveAbort.abort(); liveAbort = null; }
  const p = location.pathname;
  const page = p.startsWith("/ui/alerts/") ? "alert" : p === "/ui/sinks" ? "sinks" : p === "/ui/rules" ? "rules" : "feed";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page || (page === "alert" && a.dataset.page === "feed")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren(h("p", {}, "Loading…"));
  try {
    if (page === "alert") await alertPage(decodeURIComponent(p.slice("/ui/alerts/".length)));
    else if (page === "sinks") await sinksPage();
    else if (page === "rules") await rulesPage();
    else await feedPage();
  } catch (e) {
    if (!(e instanceof Unauthorized)) main.replaceChildren(h("p", { role: "alert" }, "Cannot load: " + e.message));
  }
}

function filterForm() {
  const q = new URLSearchParams(location.search);
  const text = (name, label) => h("label", { for: "f-" + name }, label,
    h("input", { id: "f-" + name, name, value: q.get(name) || "", type: name === "q" ? "search" : "text" }));
  const select = (name, label, opts, dflt) => h("label", { for: "f-" + name }, label,
    h("select", { id: "f-" + name, name }, opts.map(([v, t]) => h("option", { value: v, selected: (q.get(name) || dflt) === v }, t))));
  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter alerts" },
    select("range", "Range", Object.keys(RANGES).map((r) => [r, "last " + r]), "24h"),
    select("priority", "Priority at or above", [["", "any"], ...PRIORITIES.map((p) => [p.toLowerCase(), p])], ""),
    text("rule", "Rule"), text("namespace", "Namespace"), text("user", "User"), text("resource", "Resource"),
    text("verb", "Verb"), text("tags", "Tags (a,b)"), text("q", "Search output"),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) out.set(k, String(v).trim());
    go("/ui/?" + out.toString());
  });
  return form;
}

function chart(stats) {
  const W = 800, H = 150, pad = 18;
  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title" },
    h("title", { id: "chart-title" }, `Alerts per ${stats.bucket_secs} s by priority, ${stats.total} in all`));
  const b = stats.buckets;
  if (b.length === 0) { svg.append(h("text", { x: 10, y: 20, fill: "#4a4f5a" }, "No alerts in this range")); return svg; }
  const start = new Date(b[0].start).getTime(), end = new Date(b[b.length - 1].start).getTime() + stats.bucket_secs * 1000;
  const max = Math.max(...b.map((x) => Object.values(x.counts).reduce((s, n) => s + n, 0)));
  const bw = Math.max(2, (W * stats.bucket_secs * 1000) / Math.max(1, end - start) - 1);
  for (const x of b) {
    let y = H - pad;
    const left = ((new Date(x.start).getTime() - start) / Math.max(1, end - start)) * W;
    for (const p of [...PRIORITIES].reverse()) {
      const n = x.counts[p] || 0;
      if (!n) continue;
      const hgt = ((H - pad - 4) * n) / max;
      y -= hgt;
      svg.append(h("rect", { x: left.toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: hgt.toFixed(1), fill: COLORS[p] },
        h("title", {}, `${new Date(x.start).toLocaleString()}: ${n} ${p}`)));
    }
  }
  svg.append(h("line", { x1: 0, x2: W, y1: H - pad, y2: H - pad, stroke: "#9aa0ab" }));
  svg.append(h("text", { x: 0, y: H - 2, "font-size": 11, fill: "#4a4f5a" }, new Date(start).toLocaleString()));
  svg.append(h("text", { x: W, y: H - 2, "font-size": 11, fill: "#4a4f5a", "text-anchor": "end" }, new Date(end).toLocaleString()));
  svg.append(h("text", { x: 2, y: 12, "font-size": 11, fill: "#4a4f5a" }, `max ${max}`));
  return svg;
}

function topList(title, items, param) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title),
    items.length === 0 ? h("p", { class: "muted" }, "none") :
      h("ol", { class: "top-list" }, items.map((c) => h("li", {},
        h("a", { href: withParam(param, c.value) }, c.value), h("span", { class: "muted" }, String(c.count))))));
}

function alertRow(s, fresh) {
  const a = s.alert, f = a.output_fields || {};
  return h("tr", { "data-uuid": a.uuid, "data-rule": a.rule, class: fresh ? "new" : null },
    h("td", {}, h("time", { datetime: a.time }, when(a.time))),
    h("td", {}, badge(a.priority)),
    h("td", {}, h("a", { href: "/ui/alerts/" + a.uuid }, a.rule)),
    h("td", {}, s.namespace || "—"),
    h("td", {}, f["ka.user.name"] || "—"),
    h("td", { class: "out" }, a.output.length > 240 ? a.output.slice(0, 240) + "…" : a.output));
}

async function feedPage() {
  const [stats, page] = await Promise.all([api("stats?" + filterParams()), api("alerts?" + filterParams({ limit: 50 }))]);
  const tbody = h("tbody", {}, page.alerts.map((s) => alertRow(s, false)));
  let next = page.next;
  const more = h("button", { type: "button", class: "secondary", hidden: !next }, "Older alerts");
  more.addEventListener("click", async () => {
    const p = await api("alerts?" + filterParams({ limit: 50, cursor: next }));
    tbody.append(...p.alerts.map((s) => alertRow(s, false)));
    next = p.next; more.hidden = !next;
  });
  let paused = false, held = [];
  const pause = h("button", { type: "button", class: "secondary", "aria-pressed": "false", id: "pause" }, "Pause live feed");
  const heldNote = h("span", { class: "muted", "aria-live": "polite" });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume live feed" : "Pause live feed";
    if (!paused) { for (const s of held) tbody.prepend(alertRow(s, true)); held = []; heldNote.textContent = ""; }
  });
  main.replaceChildren(
    h("h1", {}, "Alerts"), filterForm(),
    h("div", { class: "row" },
      h("section", { class: "card chart", "aria-label": "Alerts over time" }, h("h2", {}, `Over time (${stats.total})`), chart(stats),
        h("div", { class: "legend" }, PRIORITIES.map((p) => h("span", {}, h("i", { class: "p-" + p }), p)))),
    ),
    h("div", { class: "row" },
      topList("Top rules", stats.top_rules, "rule"), topList("Top namespaces", stats.top_namespaces, "namespace"),
      topList("Top users", stats.top_users, "user")),
    h("div", { class: "live" }, pause, heldNote, h("span", { id: "live-state", class: "muted" }, "connecting…")),
    h("table", { id: "alerts", "aria-label": "Alerts, newest first" },
      h("thead", {}, h("tr", {}, ["Time", "Priority", "Rule", "Namespace", "User", "Output"].map((t) => h("th", { scope: "col" }, t)))),
      tbody),
    more);
  live(filterParams(), (s) => {
    if (paused) { held.unshift(s); heldNote.textContent = `${held.length} new while paused`; }
    else tbody.prepend(alertRow(s, true));
  });
}

// The live feed over fetch (EventSource cannot send the token header).
async function live(params, onAlert) {
  params.delete("since");
  const ctl = new AbortController();
  liveAbort = ctl;
  const state = () => document.getElementById("live-state");
  try {
    const r = await fetch("/api/v1/stream?" + params, { headers: headers(), signal: ctl.signal });
    if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let ev = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) ev = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (ev === "ready" && state()) state().textContent = "live";
        else if (ev === "alert") onAlert(JSON.parse(data));
        else if (ev === "lagged" && state()) state().textContent = "live (some alerts skipped: reload to see all)";
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (state()) state().textContent = "live feed lost: " + e.message;
    return;
  }
  if (!ctl.signal.aborted && state()) state().textContent = "live feed ended";
}

async function alertPage(uuid) {
  const d = await api("alerts/" + encodeURIComponent(uuid));
  const a = d.alert;
  const fields = Object.entries(a.output_fields || {});
  main.replaceChildren(
    h("p", {}, h("a", { href: "/ui/" }, "← All alerts")),
    h("h1", {}, badge(a.priority), " ", a.rule),
    h("section", { class: "card", "aria-label": "Summary" },
      h("dl", { class: "fields" },
        h("dt", {}, "time"), h("dd", {}, h("time", { datetime: a.time }, a.time)),
        h("dt", {}, "uuid"), h("dd", {}, a.uuid),
        h("dt", {}, "source"), h("dd", {}, a.source),
        h("dt", {}, "origin"), h("dd", {}, d.origin),
        h("dt", {}, "hostname"), h("dd", {}, a.hostname),
        h("dt", {}, "tags"), h("dd", {}, (a.tags || []).join(", ") || "—"))),
    h("section", { class: "card", "aria-label": "Rule" }, h("h2", {}, "Rule"),
      h("p", { id: "rule-description" }, d.rule_description || "No description (the rule is not loaded here).")),
    h("section", { class: "card", "aria-label": "Output" }, h("h2", {}, "Output"), h("pre", {}, a.output)),
    h("section", { class: "card", "aria-label": "Output fields" }, h("h2", {}, "Fields"),
      h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null ? "<NA>" : typeof v === "string" ? v : JSON.stringify(v))]))),
    h("section", { class: "card", "aria-label": "Delivery" }, h("h2", {}, "Delivery per sink"),
      d.deliveries.length === 0 ? h("p", { class: "muted" }, "No outcome recorded yet.") :
        h("table", { id: "deliveries" }, h("thead", {}, h("tr", {}, ["Sink", "Type", "State", "Reason", "At"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, d.deliveries.map((x) => h("tr", { "data-sink": x.sink },
            h("td", {}, x.sink), h("td", {}, x.sink_type), h("td", {}, h("span", { class: "badge s-" + x.state }, x.state.replace("_", " "))),
            h("td", {}, x.reason || ""), h("td", {}, when(x.at))))))),
    h("details", { class: "card" }, h("summary", {}, "Falco JSON"), h("pre", {}, JSON.stringify(a, null, 2))));
  document.title = a.rule + " · kaudit console";
}

async function sinksPage() {
  const { sinks } = await api("sinks");
  main.replaceChildren(h("h1", {}, "Sinks"),
    h("table", { id: "sinks", "aria-label": "Sinks" },
      h("thead", {}, h("tr", {}, ["Sink", "Type", "Health", "Queue", "Spooled", "Sent", "Failed", "Dead letters", "Last success", "Last error"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sinks.map((s) => h("tr", { "data-sink": s.name },
        h("td", {}, s.name, s.tenant ? h("span", { class: "muted" }, " (" + s.tenant + ")") : null),
        h("td", {}, s.type), h("td", {}, h("span", { class: "badge h-" + s.health }, s.health)),
        h("td", {}, s.queue_depth), h("td", {}, `${s.spool_records} (${s.spool_bytes} B)`),
        h("td", {}, s.sent), h("td", {}, s.failed),
        h("td", {}, s.dead_lettered, s.last_dead_letter ? h("div", { class: "muted" }, s.last_dead_letter) : null),
        h("td", {}, when(s.last_success)),
        h("td", {}, s.last_error ? [when(s.last_error_at), h("div", { class: "muted" }, s.last_error)] : "—"))))));
}

async function rulesPage() {
  const q = new URLSearchParams(location.search);
  const range = RANGES[q.get("range") || "24h"] || 86400;
  const since = new Date(Date.now() - range * 1000).toISOString();
  const r = await api("rules?since=" + encodeURIComponent(since));
  r.rules.sort((a, b) => b.hits - a.hits || a.name.localeCompare(b.name));
  main.replaceChildren(h("h1", {}, "Rules"),
    r.error ? h("p", { role: "alert", class: "card" }, "Last reload failed (the previous rules stay in force): " + r.error) : null,
    r.warnings.length ? h("details", { class: "card" }, h("summary", {}, `${r.warnings.length} load warnings`), h("pre", {}, r.warnings.join("\n"))) : null,
    h("table", { id: "rules", "aria-label": "Rules" },
      h("thead", {}, h("tr", {}, ["Rule", "Priority", "Tags", "State", `Hits (last ${q.get("range") || "24h"})`].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, r.rules.map((x) => h("tr", {},
        h("td", {}, h("a", { href: withParam("rule", x.name) }, x.name), h("div", { class: "muted" }, x.description)),
        h("td", {}, badge(x.priority)), h("td", {}, x.tags.join(", ")),
        h("td", {}, x.active ? "active" : x.enabled ? "inactive" : "disabled"), h("td", {}, x.hits))))));
}

route();
