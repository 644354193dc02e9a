// newsstream dashboard: polls /dashboard/data and draws small SVG charts.
// Every piece of data reaches the DOM through textContent or setAttribute on nodes built
// here; links accept only http(s) URLs. Nothing is parsed as HTML.
"use strict";

const POLL_MS = 2500;
const FETCH_TIMEOUT_MS = 8000;
const SVG_NS = "http://www.w3.org/2000/svg";
const OUTCOME_COLORS = { indexed: "#2f855a", duplicate: "#718096", rejected: "#d69e2e", dlq: "#c53030", deleted: "#4a5568", expired: "#a0aec0" };
const SECTION_LABELS = { workers: "worker status", lag: "consumer lag", feeds: "feed status",
  trends: "search trends", milvus: "Milvus" };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function safeUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_e) { return null; }
}

function link(text, href) {
  const url = safeUrl(href);
  if (!url) return el("span", {}, text);
  return el("a", { href: url, rel: "noopener noreferrer nofollow", target: "_blank" }, text);
}

function fmtInt(n) { return typeof n === "number" ? Math.round(n).toLocaleString("en-US") : "n/a"; }
function fmtRate(n) { return typeof n === "number" ? n.toFixed(n < 10 ? 2 : 1) + "/s" : "n/a"; }
function fmtSeconds(s) {
  if (typeof s !== "number") return "n/a";
  return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(s < 10 ? 2 : 1) + " s";
}
function fmtAgo(s) {
  if (typeof s !== "number") return "n/a";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function fmtDate(epoch) {
  if (typeof epoch !== "number") return "";
  return new Date(epoch * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// --- charts ------------------------------------------------------------------------------

function emptyChart(svg, message) {
  clear(svg);
  const box = svg.viewBox.baseVal;
  svg.appendChild(svgEl("text", { x: box.width / 2, y: box.height / 2, "text-anchor": "middle",
    class: "empty" }, message));
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function lineChart(svg, points, opts) {
  if (!points || points.length < 2) { emptyChart(svg, opts.empty); return; }
  clear(svg);
  const box = svg.viewBox.baseVal;
  const left = 48, right = 10, top = 10, bottom = 24;
  const w = box.width - left - right, h = box.height - top - bottom;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const span = Math.max(1, t1 - t0);
  const ymax = niceMax(Math.max(...points.map((p) => p[1])));
  const x = (t) => left + ((t - t0) / span) * w;
  const y = (v) => top + h - (v / ymax) * h;
  for (const frac of [0, 0.5, 1]) {
    const yy = y(ymax * frac);
    svg.appendChild(svgEl("line", { x1: left, x2: left + w, y1: yy, y2: yy, class: "grid" }));
    svg.appendChild(svgEl("text", { x: left - 6, y: yy + 4, "text-anchor": "end", class: "axis" },
      opts.format(ymax * frac)));
  }
  const d = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
  const area = d + " L" + x(t1).toFixed(1) + "," + (top + h) + " L" + x(t0).toFixed(1) + "," + (top + h) + " Z";
  svg.appendChild(svgEl("path", { d: area, class: "area" }));
  svg.appendChild(svgEl("path", { d: d, class: "line", "data-testid": opts.testid }));
  const last = points[points.length - 1];
  svg.appendChild(svgEl("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, class: "dot" }));
  svg.appendChild(svgEl("text", { x: left, y: box.height - 6, class: "axis" },
    new Date(t0 * 1000).toLocaleTimeString()));
  svg.appendChild(svgEl("text", { x: left + w, y: box.height - 6, "text-anchor": "end", class: "axis" },
    new Date(t1 * 1000).toLocaleTimeString()));
}

// rows: [{label, value, color?, url?}]
function barChart(svg, rows, opts) {
  if (!rows || rows.length === 0) { emptyChart(svg, opts.empty); return; }
  clear(svg);
  const box = svg.viewBox.baseVal;
  const labelW = opts.labelWidth || 110, valueW = 56;
  const rowH = Math.min(24, (box.height - 4) / rows.length);
  const max = Math.max(1, ...rows.map((r) => r.value));
  const w = box.width - labelW - valueW;
  rows.forEach((r, i) => {
    const yy = 2 + i * rowH;
    const label = svgEl("text", { x: labelW - 6, y: yy + rowH * 0.68, "text-anchor": "end", class: "label" },
      r.label.length > 18 ? r.label.slice(0, 17) + "…" : r.label);
    label.appendChild(svgEl("title", {}, r.label));
    svg.appendChild(label);
    const bw = Math.max(r.value > 0 ? 2 : 0, (r.value / max) * w);
    const rect = svgEl("rect", { x: labelW, y: yy + rowH * 0.15, width: bw.toFixed(1),
      height: (rowH * 0.7).toFixed(1), rx: 2, class: "bar" });
    if (r.color) rect.setAttribute("fill", r.color);
    rect.appendChild(svgEl("title", {}, r.label + ": " + fmtInt(r.value)));
    svg.appendChild(rect);
    svg.appendChild(svgEl("text", { x: labelW + bw + 4, y: yy + rowH * 0.68, class: "value" }, fmtInt(r.value)));
  });
}

// --- panels ------------------------------------------------------------------------------

function renderStatus(sections, generatedAt) {
  const box = $("status");
  clear(box);
  for (const [name, s] of Object.entries(sections)) {
    const cls = s.ok ? "pill ok" : s.error === "loading" ? "pill wait" : "pill bad";
    const pill = el("span", { class: cls, "data-section-status": name }, SECTION_LABELS[name] || name);
    if (!s.ok) pill.setAttribute("title", s.error || "unavailable");
    box.appendChild(pill);
  }
  for (const note of document.querySelectorAll(".note[data-section]")) {
    const s = sections[note.getAttribute("data-section")];
    if (!s || s.ok) { note.textContent = ""; note.hidden = true; continue; }
    note.hidden = false;
    const what = SECTION_LABELS[note.getAttribute("data-section")] || "source";
    note.textContent = s.error === "loading" ? "loading " + what + "…"
      : what + " unavailable: " + (s.error || "unknown error") + (s.stale ? " (showing last known data)" : "");
  }
  $("updated").textContent = "updated " + new Date(generatedAt * 1000).toLocaleTimeString();
  $("updated").className = "updated";
}

function renderTiles(data) {
  const t = data.totals;
  $("indexed-total").textContent = t ? fmtInt(t.indexed) : "n/a";
  $("consumed-total").textContent = t ? fmtInt(t.consumed) : "n/a";
  $("ingest-now").textContent = fmtRate(data.ingest.now_per_s);
  $("lag-total").textContent = data.lag ? fmtInt(data.lag.total) : "n/a";
  $("tts").textContent = data.tts ? fmtSeconds(data.tts.p50_s) + " / " + fmtSeconds(data.tts.p95_s) : "n/a";
  if (!data.tts) $("tts").setAttribute("title", "the worker status does not report time-to-searchable yet");
  const sl = data.search_latency;
  $("search-latency").textContent = sl && sl.count ? fmtSeconds(sl.p50_s) + " / " + fmtSeconds(sl.p95_s) : "n/a";
  $("search-latency").setAttribute("title", sl ? sl.count + " searches since this API started" : "");
  $("index-rows").textContent = typeof data.index_rows === "number" ? fmtInt(data.index_rows) : "n/a";
  $("feeds-summary").textContent = data.feeds ? data.feeds.healthy + " / " + data.feeds.failing : "n/a";
}

function renderOutcomes(data) {
  const t = data.totals;
  const svg = $("outcomes-chart");
  if (!t) { emptyChart(svg, data.sections.workers.ok ? "no data yet" : "unavailable"); $("conservation").textContent = ""; return; }
  const rows = [
    { label: "indexed", value: t.indexed, color: OUTCOME_COLORS.indexed },
    { label: "duplicate", value: t.duplicate, color: OUTCOME_COLORS.duplicate },
  ];
  const reasons = Object.entries(t.rejected_by_reason || {});
  if (reasons.length === 0) rows.push({ label: "rejected", value: t.rejected, color: OUTCOME_COLORS.rejected });
  for (const [reason, n] of reasons) rows.push({ label: "rejected: " + reason, value: n, color: OUTCOME_COLORS.rejected });
  rows.push({ label: "dlq", value: t.dlq, color: OUTCOME_COLORS.dlq });
  for (const name of ["deleted", "expired"]) if (t[name]) rows.push({ label: name, value: t[name], color: OUTCOME_COLORS[name] });
  barChart(svg, rows, { empty: "no data yet", labelWidth: 130 });
  $("conservation").textContent = t.workers + " worker(s); in flight: " + fmtInt(t.in_flight);
}

function renderLag(data) {
  const rows = data.lag ? data.lag.partitions.map((p) => ({ label: "partition " + p[0], value: p[1] })) : [];
  barChart($("lag-chart"), rows, { empty: data.lag ? "no partitions yet" : "n/a" });
}

function renderSources(data) {
  const rows = (data.top_sources || []).map((s) => ({ label: String(s[0]), value: s[1] }));
  barChart($("sources-chart"), rows, { empty: data.top_sources ? "no rows yet" : "n/a", labelWidth: 140 });
}

function rankedList(items, empty) {
  if (!items || items.length === 0) return el("p", { class: "muted" }, empty);
  const ol = el("ol", { class: "ranked" });
  for (const it of items) {
    const li = el("li");
    li.appendChild(it.url ? link(it.label, it.url) : el("span", {}, it.label));
    if (typeof it.value === "number") li.appendChild(el("span", { class: "count" }, Number.isInteger(it.value) ? fmtInt(it.value) : it.value.toFixed(2)));
    ol.appendChild(li);
  }
  return ol;
}

function renderTrends(data) {
  const box = $("trends"), stories = $("stories");
  clear(box); clear(stories);
  const windows = data.trends ? Object.entries(data.trends) : [];
  if (windows.length === 0) {
    const msg = data.trends || data.sections.trends.ok ? "no data yet" : "unavailable";
    box.appendChild(el("p", { class: "muted" }, msg));
    stories.appendChild(el("p", { class: "muted" }, msg));
    return;
  }
  for (const [win, body] of windows) {
    const col = el("div", { class: "trend-window" });
    col.appendChild(el("h3", {}, "last " + win + (typeof body.searches === "number" ? " · " + fmtInt(body.searches) + " searches" : "")));
    col.appendChild(el("h4", {}, "top queries"));
    col.appendChild(rankedList(body.top_queries, "no data yet"));
    col.appendChild(el("h4", {}, "rising"));
    col.appendChild(rankedList(body.rising_queries, "no data yet"));
    box.appendChild(col);
    const scol = el("div", { class: "trend-window" });
    scol.appendChild(el("h3", {}, "last " + win));
    scol.appendChild(rankedList(body.top_stories, "no data yet"));
    stories.appendChild(scol);
  }
}

function renderFeeds(data) {
  const box = $("feeds");
  clear(box);
  const f = data.feeds;
  if (!f || f.total === 0) { box.appendChild(el("p", { class: "muted" }, f ? "no data yet" : "unavailable")); return; }
  const table = el("table", { class: "feeds" });
  const head = el("tr");
  for (const h of ["feed", "last result", "items", "error streak", "last fetch", "next poll", "last error"]) head.appendChild(el("th", {}, h));
  table.appendChild(el("thead")).appendChild(head);
  const body = el("tbody");
  for (const r of f.rows) {
    const tr = el("tr", { class: r.error_streak > 0 ? "failing" : "healthy" });
    tr.appendChild(el("td")).appendChild(link(r.name, r.url));
    tr.appendChild(el("td", { class: "result" }, r.last_result));
    tr.appendChild(el("td", { class: "num" }, fmtInt(r.items)));
    tr.appendChild(el("td", { class: "num" }, fmtInt(r.error_streak)));
    tr.appendChild(el("td", {}, r.last_fetch_ago_s === null ? "never" : fmtAgo(r.last_fetch_ago_s) + " ago"));
    tr.appendChild(el("td", {}, r.next_poll_in_s === null ? "n/a" : r.next_poll_in_s <= 0 ? "due" : "in " + fmtAgo(r.next_poll_in_s)));
    tr.appendChild(el("td", { class: "error" }, r.last_error || ""));
    body.appendChild(tr);
  }
  table.appendChild(body);
  box.appendChild(table);
  if (f.total > f.rows.length) box.appendChild(el("p", { class: "muted" }, "showing " + f.rows.length + " of " + f.total + " feeds (failing first)"));
}

function render(data) {
  renderStatus(data.sections, data.generated_at);
  renderTiles(data);
  lineChart($("ingest-chart"), data.ingest.series, { empty: data.totals ? "waiting for a second worker report…" : data.sections.workers.ok ? "no data yet" : "unavailable",
    format: (v) => v.toFixed(v < 10 ? 1 : 0), testid: "ingest-line" });
  renderOutcomes(data);
  renderLag(data);
  renderSources(data);
  renderTrends(data);
  renderFeeds(data);
}

// --- fetching ----------------------------------------------------------------------------

function apiHeaders() {
  const key = sessionStorage.getItem("newsstream-api-key");
  return key ? { "X-API-Key": key } : {};
}

async function getJson(url) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(url, { headers: apiHeaders(), signal: ctrl.signal, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_e) { body = null; }
    if (r.status === 401 || r.status === 403) $("api-key").hidden = false;
    if (!r.ok) {
      const msg = body && body.error && body.error.message ? body.error.message : "HTTP " + r.status;
      throw new Error(msg);
    }
    return body;
  } finally { clearTimeout(timer); }
}

async function poll() {
  try {
    render(await getJson("/dashboard/data"));
  } catch (e) {
    $("updated").textContent = "dashboard data unavailable: " + (e && e.message ? e.message : e) + " (retrying)";
    $("updated").className = "updated bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function renderResults(body) {
  const list = $("search-results");
  clear(list);
  $("search-info").textContent = body.results.length + " result(s) for “" + body.query + "” (" + body.mode + ")";
  for (const r of body.results) {
    const li = el("li", { class: "result", "data-testid": "search-result" });
    const title = link(r.title || r.url || r.id, r.url);
    title.classList.add("title");
    title.setAttribute("data-testid", "result-title");
    li.appendChild(title);
    const meta = el("div", { class: "meta" });
    meta.appendChild(el("span", { class: "source" }, r.source));
    if (r.published_at) meta.appendChild(el("span", {}, fmtDate(r.published_at)));
    meta.appendChild(el("span", { class: "score" }, "score " + Number(r.score).toFixed(3)));
    li.appendChild(meta);
    if (r.snippet) li.appendChild(el("p", { class: "snippet" }, r.snippet));
    if (r.also_reported_by && r.also_reported_by.length) {
      const also = el("div", { class: "also" }, "also reported by: ");
      r.also_reported_by.forEach((a, i) => {
        if (i) also.appendChild(document.createTextNode(", "));
        also.appendChild(link(a.source, a.url));
      });
      li.appendChild(also);
    }
    if (typeof r.story_url === "string" && /^\/stories\/[0-9a-f]{32}$/.test(r.story_url)) {
      const toggle = el("button", { type: "button", class: "story-toggle", "data-testid": "story-toggle" }, "story timeline");
      toggle.addEventListener("click", () => toggleStory(li, r.story_url));
      li.appendChild(toggle);
    }
    list.appendChild(li);
  }
}

// The story's articles in time order, fetched with the API key like every other call.
async function toggleStory(li, storyUrl) {
  const shown = li.querySelector(".story");
  if (shown) { shown.remove(); return; }
  const box = el("ol", { class: "story", "data-testid": "story-articles" });
  li.appendChild(box);
  try {
    const story = await getJson(storyUrl);
    for (const a of story.articles) {
      const item = el("li", {}, fmtDate(a.published_at || a.ingested_at) + " " + a.source + ": ");
      item.appendChild(link(a.title || a.url, a.url));
      box.appendChild(item);
    }
    if (story.truncated) box.appendChild(el("li", { class: "muted" }, "… " + (story.count - story.articles.length) + " more"));
  } catch (e) {
    box.appendChild(el("li", { class: "muted" }, "story unavailable: " + (e && e.message ? e.message : e)));
  }
}

async function search(ev) {
  ev.preventDefault();
  const keyInput = $("api-key");
  if (!keyInput.hidden && keyInput.value) sessionStorage.setItem("newsstream-api-key", keyInput.value);
  const q = $("search-input").value.trim();
  if (!q) return;
  $("search-info").textContent = "searching…";
  clear($("search-results"));
  try {
    renderResults(await getJson("/search?" + new URLSearchParams({ q: q, k: "10" }).toString()));
  } catch (e) {
    $("search-info").textContent = "search failed: " + (e && e.message ? e.message : e);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", search);
  poll();
});
