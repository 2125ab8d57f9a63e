// The status page: polls /api/page every second and redraws. Text goes in with textContent only (an incident's
// reason is data, never markup). The timeline's history is what this page has seen since it was opened, plus the
// runbook journal's steps, which the daemon keeps.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const PHASE_COLOURS = { open: "#1565c0", protection: "#00897b", halted: "#4e342e" };
const SITE_COLOURS = { healthy: "#2e7d32", suspect: "#f9a825", degraded: "#ef6c00", down: "#c62828",
                       flapping: "#6a1b9a", unknown: "#9e9e9e" };
const history = {};  // lane -> [[t, state], ...]
let last = null;
let skew = 0;  // the daemon's clock minus ours, so the countdown ends when the daemon's window does

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child === null || child === undefined ? "" : child);
  return node;
}

function row(cells, header) {
  return el("tr", {}, ...cells.map((cell) => el(header ? "th" : "td", {}, cell)));
}

function verdict(text) {
  return el("span", { class: `verdict v-${text}` }, text);
}

function remember(lane, t, state) {
  const points = history[lane] || (history[lane] = []);
  if (!points.length || points[points.length - 1][1] !== state) points.push([t, state]);
  if (points.length > 500) points.shift();
}

function countdown(until) {
  const left = Math.max(0, Math.round(until - (Date.now() / 1000 + skew)));
  const minutes = Math.floor(left / 60);
  return `${minutes}:${String(left % 60).padStart(2, "0")} left`;
}

function drawTrading(doc) {
  const box = document.getElementById("trading");
  box.replaceChildren(...doc.engines.map((engine) => {
    const card = el("div", { class: `card ${engine.phase}`, "data-engine": engine.name, "data-phase": engine.phase });
    card.append(el("div", { class: "muted" }, `engine ${engine.name} · primary ${engine.primary} · epoch ${engine.epoch}`));
    card.append(el("div", { class: "phase" }, engine.phase));
    if (engine.phase === "protection" && engine.phase_until) {
      card.append(el("div", { class: "countdown", "data-until": String(engine.phase_until.at) },
                     countdown(engine.phase_until.at)));
      card.append(el("div", { class: "muted" }, `cancel, post-only and add-margin only until ${engine.phase_until.text}`));
    } else if (engine.phase_since) {
      card.append(el("div", { class: "muted" }, `since ${engine.phase_since.text}`));
    }
    if (engine.incident) card.append(el("div", {}, `incident ${engine.incident.id}: ${engine.incident.status}`));
    const latest = doc.incidents.find((i) => i.engine === engine.name);
    if (latest && latest.phases.length) {
      card.append(el("ol", { class: "history" }, ...latest.phases.map((p) =>
        el("li", { "data-phase": p.phase }, `${p.phase} from ${p.since.text}`))));
    }
    return card;
  }));
}

function drawTables(doc) {
  document.getElementById("sites").replaceChildren(
    row(["site", "provider", "region", "verdict"], true),
    ...doc.sites.map((s) => row([s.name, s.provider, s.region, verdict(s.verdict)])));
  const replicas = [row(["engine", "replica", "site", "role", "verdict", "site verdict"], true)];
  for (const engine of doc.engines) {
    for (const r of engine.replicas) {
      replicas.push(row([engine.name, r.name, r.site, r.role, verdict(r.verdict), verdict(r.site_verdict)]));
    }
  }
  document.getElementById("replicas").replaceChildren(...replicas);
  document.getElementById("incidents").replaceChildren(
    row(["incident", "engine", "status", "kind", "from → to", "opened", "closed"], true),
    ...doc.incidents.map((i) => {
      const tr = row([i.id, i.engine, i.status, i.kind, `${i.source || "?"} → ${i.target || "?"}`,
                      i.opened ? i.opened.text : "", i.closed ? i.closed.text : ""]);
      tr.setAttribute("data-incident", i.id);
      return tr;
    }));
}

function drawRunbook(doc) {
  const current = doc.incidents[0];
  const list = document.getElementById("runbook");
  if (!current) { list.replaceChildren(el("li", { class: "muted" }, "no incident")); return; }
  list.replaceChildren(...current.steps.map((s) => {
    const item = el("li", { class: `s-${s.state}`, "data-step": s.step, "data-state": s.state },
                    `${s.step}: ${s.state}`);
    return item;
  }));
}

function drawMore(doc) {
  const items = [];
  const n = doc.notifications || {};
  items.push(el("li", {}, `notifications: ${n.pending || 0} pending, ${n.abandoned || 0} abandoned`));
  for (const q of doc.quarantines) {
    items.push(el("li", {}, `quarantine ${q.site}: ${q.ends ? "ends " + q.ends.text : "clock stopped (not healthy)"}`));
  }
  for (const d of doc.daemons) {
    items.push(el("li", {}, `daemon ${d.identity}: ${d.leader ? "leader" : "follower"}, last report ${d.wall_text}`));
  }
  document.getElementById("more").replaceChildren(...items);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawTimeline(doc) {
  const now = doc.generated_at;
  const lanes = Object.keys(history);
  const steps = doc.incidents[0] ? doc.incidents[0].steps : [];
  const starts = lanes.map((lane) => history[lane][0][0]).concat(steps.map((s) => s.started));
  const origin = Math.min(now - 60, ...starts);
  const width = 1000, left = 170, rowH = 22, rows = lanes.length + steps.length;
  const x = (t) => left + ((t - origin) / Math.max(1, now - origin)) * (width - left - 10);
  const root = svg("svg", { viewBox: `0 0 ${width} ${rows * rowH + 30}`, role: "img",
                            "aria-label": "timeline of sites, trading phases and runbook steps" });
  // the halt and protection windows, shaded across every lane
  for (const lane of lanes.filter((l) => l.startsWith("engine "))) {
    const points = history[lane];
    points.forEach(([t, state], i) => {
      if (state !== "halted" && state !== "protection") return;
      const end = i + 1 < points.length ? points[i + 1][0] : now;
      root.append(svg("rect", { x: x(t), y: 0, width: Math.max(1, x(end) - x(t)), height: rows * rowH,
                                fill: PHASE_COLOURS[state], "fill-opacity": 0.12 }));
    });
  }
  lanes.forEach((lane, index) => {
    const y = index * rowH;
    root.append(svg("text", { x: 4, y: y + 15, "font-size": 12 }, lane));
    const points = history[lane];
    const palette = lane.startsWith("engine ") ? PHASE_COLOURS : SITE_COLOURS;
    points.forEach(([t, state], i) => {
      const end = i + 1 < points.length ? points[i + 1][0] : now;
      root.append(svg("rect", { x: x(t), y: y + 3, width: Math.max(1, x(end) - x(t)), height: rowH - 6,
                                fill: palette[state] || "#607d8b" }, undefined));
    });
  });
  steps.forEach((step, index) => {
    const y = (lanes.length + index) * rowH;
    root.append(svg("text", { x: 4, y: y + 15, "font-size": 12 }, `step ${step.step}`));
    root.append(svg("rect", { x: x(step.started), y: y + 6, width: Math.max(2, x(step.at) - x(step.started)),
                              height: rowH - 12, fill: step.state === "done" ? "#546e7a" : "#90a4ae" }));
  });
  root.append(svg("text", { x: left, y: rows * rowH + 20, "font-size": 11 },
                  `${Math.round(now - origin)} s shown, up to ${doc.generated}`));
  document.getElementById("timeline").replaceChildren(root);
}

function draw(doc) {
  for (const s of doc.sites) remember(`site ${s.name}`, doc.generated_at, s.verdict);
  for (const e of doc.engines) remember(`engine ${e.name}`, doc.generated_at, e.phase);
  const d = doc.daemon;
  document.getElementById("leader").textContent =
    `served by ${d.identity} (${d.leader ? "leader" : "follower"}), cycle ${d.cycles}${d.error ? ", error: " + d.error : ""}`;
  document.getElementById("generated").textContent = doc.generated;
  drawTrading(doc);
  drawTables(doc);
  drawRunbook(doc);
  drawMore(doc);
  drawTimeline(doc);
}

async function poll() {
  try {
    const answer = await fetch("api/page", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    last = await answer.json();
    skew = last.generated_at - Date.now() / 1000;
    document.getElementById("stale").hidden = true;
    draw(last);
  } catch (error) {
    document.getElementById("stale").hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

setInterval(() => {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = countdown(Number(node.dataset.until));
}, 250);
poll();
