# The dashboard's stylesheet and script, served at /static/app.css and /static/app.js.
#
# Theory of operation. No build step: one stylesheet and one small vanilla script. The
# script only enhances server-rendered pages (live figures on the overview, named values
# fetched on click, the relative times) and writes everything it got from the server with
# textContent, never innerHTML, so data stays text in the browser too.
from __future__ import annotations

CSS = """
:root {
  --bg: #f5f6f8; --panel: #ffffff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec;
  --accent: #3c5bd9; --accent-soft: #e9eefc; --ok: #1f8a4c; --ok-soft: #e3f5ea;
  --bad: #c2352b; --bad-soft: #fbe7e5; --run: #9a6a00; --run-soft: #fdf3d8;
  --off: #59606e; --off-soft: #eceef2; --live: #3c5bd9; --live-soft: #e9eefc;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { background: #161b2e; color: #e8ebf5; display: flex; align-items: center;
  gap: 28px; padding: 0 28px; height: 54px; }
header.top .brand { font-weight: 700; letter-spacing: .2px; font-size: 16px; color: #fff; }
header.top .brand span { color: #8fa6ff; }
header.top nav a { color: #c5cbe0; margin-right: 18px; padding: 16px 0; }
header.top nav a.on { color: #fff; border-bottom: 2px solid #8fa6ff; }
header.top .where { margin-left: auto; font-family: var(--mono); font-size: 12px; color: #98a0ba; }
.pill { display: inline-block; padding: 2px 8px; border-radius: 999px; font-size: 11px;
  font-weight: 600; letter-spacing: .3px; text-transform: uppercase; }
.pill.ro { background: #3a2f0d; color: #ffd66b; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 22px; margin: 4px 0 18px; font-weight: 650; }
h1 .id { font-family: var(--mono); font-weight: 600; word-break: break-all; }
h1 .badge { font-size: 13px; vertical-align: middle; }
h2 { font-size: 15px; margin: 0 0 12px; font-weight: 650; }
.sub { color: var(--muted); font-size: 13px; margin: -12px 0 18px; }
.grid { display: grid; gap: 16px; }
.cards { grid-template-columns: repeat(4, 1fr); margin-bottom: 18px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(2, 1fr); } }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
.card .value { font-size: 24px; font-weight: 650; margin-top: 4px; font-variant-numeric: tabular-nums; }
.card .hint { color: var(--muted); font-size: 12px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px; margin-bottom: 18px; overflow-x: auto; }
.two { grid-template-columns: 1fr 1fr; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .3px; }
td.num, th.num { text-align: right; }
tr:last-child td { border-bottom: none; }
tbody tr:hover { background: #fafbfd; }
.mono, td.id { font-family: var(--mono); font-size: 12.5px; word-break: break-all; }
table.flows td.id, table.flows time { white-space: nowrap; }
.muted { color: var(--muted); }
.zero { color: #c3c8d4; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px;
  font-weight: 600; background: var(--live-soft); color: var(--live); white-space: nowrap; }
.badge.ok { background: var(--ok-soft); color: var(--ok); }
.badge.bad { background: var(--bad-soft); color: var(--bad); }
.badge.run { background: var(--run-soft); color: var(--run); }
.badge.off { background: var(--off-soft); color: var(--off); }
.empty { color: var(--muted); padding: 10px 0; }
form.filters.open { margin-top: 12px; }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-end; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
input, select, textarea { font: inherit; padding: 6px 9px; border: 1px solid #cfd4de;
  border-radius: 7px; background: #fff; color: var(--ink); min-width: 120px; }
textarea { font-family: var(--mono); font-size: 12.5px; width: 100%; min-height: 70px; }
button, .button { font: inherit; font-weight: 600; padding: 7px 14px; border-radius: 7px;
  border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer;
  display: inline-block; }
button.ghost, .button.ghost { background: #fff; color: var(--accent); }
button.danger, .button.danger { background: var(--bad); border-color: var(--bad); }
.button:hover { text-decoration: none; filter: brightness(1.05); }
.actions { display: flex; gap: 8px; flex-wrap: wrap; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.fields dt { color: var(--muted); }
dl.fields dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
pre { background: #f3f4f8; border: 1px solid var(--line); border-radius: 7px; padding: 10px 12px;
  font-family: var(--mono); font-size: 12.5px; white-space: pre-wrap; word-break: break-all;
  max-height: 360px; overflow: auto; margin: 6px 0 0; }
ol.timeline { list-style: none; margin: 0; padding: 0 0 0 6px; }
ol.timeline li { position: relative; padding: 0 0 14px 22px; border-left: 2px solid var(--line); }
ol.timeline li:last-child { border-left-color: transparent; }
ol.timeline li::before { content: ""; position: absolute; left: -7px; top: 3px; width: 12px;
  height: 12px; border-radius: 50%; background: var(--accent); border: 2px solid #fff;
  box-shadow: 0 0 0 1px var(--line); }
ol.timeline li.ok::before { background: var(--ok); }
ol.timeline li.bad::before { background: var(--bad); }
ol.timeline li.off::before { background: var(--off); }
ol.timeline li.run::before { background: var(--run); }
ol.timeline .head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
ol.timeline .ev { font-weight: 650; }
ol.timeline .meta { color: var(--muted); font-size: 12.5px; font-family: var(--mono); word-break: break-all; }
.flash { padding: 10px 14px; border-radius: 8px; margin-bottom: 16px; }
.flash.ok { background: var(--ok-soft); color: var(--ok); }
.flash.bad { background: var(--bad-soft); color: var(--bad); }
.confirm { max-width: 640px; }
.confirm .what { font-size: 15px; margin: 8px 0 16px; }
canvas.spark { width: 100%; height: 46px; display: block; margin-top: 6px; }
.pager { display: flex; justify-content: space-between; align-items: center; margin-top: 12px; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.live-dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: var(--ok);
  margin-right: 6px; animation: pulse 2s infinite; }
@keyframes pulse { 50% { opacity: .35; } }
"""

JS = r"""
"use strict";
(function () {
  const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  function setText(el, text) { if (el) el.textContent = text; }

  // Overview: poll /api/overview, update counts and figures, draw throughput.
  const live = document.querySelector("[data-live]");
  if (live) {
    const every = Number(live.dataset.live) || 2000;
    let last = null;
    const history = [];
    async function tick() {
      let data;
      try {
        const r = await fetch("api/overview", { headers: { "accept": "application/json" } });
        if (!r.ok) throw new Error(String(r.status));
        data = await r.json();
      } catch (e) {
        setText(document.getElementById("live-status"), "disconnected");
        return;
      }
      setText(document.getElementById("live-status"), "live");
      const t = data.totals;
      const now = performance.now();
      if (last) {
        const dt = (now - last.at) / 1000;
        const rps = (t.requests - last.t.requests) / dt;
        const cps = (t.commits - last.t.commits) / dt;
        const recs = (t.records - last.t.records);
        const commits = (t.commits - last.t.commits);
        const syncs = (t.fsyncs - last.t.fsyncs);
        const syncSec = (t.sync_seconds - last.t.sync_seconds);
        setText(document.getElementById("fig-rps"), fmt.format(rps));
        setText(document.getElementById("fig-cps"), fmt.format(cps));
        setText(document.getElementById("fig-per-commit"), commits ? fmt.format(recs / commits) : "–");
        setText(document.getElementById("fig-sync"), syncs ? fmt.format(1000 * syncSec / syncs) + " ms" : "–");
        history.push(rps);
        if (history.length > 90) history.shift();
        draw(document.getElementById("spark"), history);
      }
      last = { at: now, t: t };
      setText(document.getElementById("fig-flows"), fmt.format(t.flows));
      setText(document.getElementById("fig-queue"), fmt.format(t.queue_depth));
      setText(document.getElementById("fig-outbox"), fmt.format(t.outbox));
      setText(document.getElementById("fig-log"), bytes(t.log_bytes));
      for (const cell of document.querySelectorAll("[data-count]")) {
        const [type, state] = JSON.parse(cell.dataset.count);
        const per = data.counts[type] || {};
        const n = per[state] || 0;
        setText(cell.querySelector("a") || cell, n ? fmt.format(n) : "·");
        cell.classList.toggle("zero", !n);
      }
      for (const cell of document.querySelectorAll("[data-total]")) {
        const per = data.counts[cell.dataset.total] || {};
        setText(cell, fmt.format(Object.values(per).reduce((a, b) => a + b, 0)));
      }
      // A count with no cell (a new type or state) needs a reload to be shown.
      const shown = new Set(Array.from(document.querySelectorAll("[data-count]"), c => c.dataset.count));
      const unseen = Object.entries(data.counts).some(([type, per]) =>
        Object.entries(per).some(([state, n]) => n && !shown.has(JSON.stringify([type, state]))));
      const note = document.getElementById("live-new");
      if (note) note.hidden = !unseen;
    }
    function bytes(n) {
      const u = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
      return (i ? n.toFixed(1) : String(n)) + " " + u[i];
    }
    function draw(canvas, points) {
      if (!canvas || points.length < 2) return;
      const w = canvas.width = canvas.clientWidth * devicePixelRatio;
      const h = canvas.height = canvas.clientHeight * devicePixelRatio;
      const ctx = canvas.getContext("2d");
      const max = Math.max(1, ...points);
      ctx.clearRect(0, 0, w, h);
      ctx.beginPath();
      points.forEach((p, i) => {
        const x = (i / (points.length - 1)) * w;
        const y = h - (p / max) * (h - 4) - 2;
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.strokeStyle = "#3c5bd9";
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.stroke();
      ctx.lineTo(w, h); ctx.lineTo(0, h); ctx.closePath();
      ctx.fillStyle = "rgba(60, 91, 217, 0.10)";
      ctx.fill();
    }
    tick();
    setInterval(tick, every);
  }

  // One flow: named values are fetched only when asked for.
  for (const button of document.querySelectorAll("button[data-value]")) {
    button.addEventListener("click", async () => {
      const out = document.getElementById(button.dataset.target);
      setText(out, "loading…");
      out.hidden = false;
      try {
        const r = await fetch(button.dataset.value, { headers: { "accept": "application/json" } });
        const data = await r.json();
        if (!r.ok) { setText(out, data.error || String(r.status)); return; }
        const head = data.kind + ", " + data.size + " bytes" + (data.truncated ? " (truncated)" : "");
        setText(out, head + "\n\n" + data.text);
      } catch (e) {
        setText(out, "could not load: " + e);
      }
    });
  }
})();
"""
