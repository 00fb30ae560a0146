// Ferry's dashboard: reads the host's snapshot stream (`GET /v1/events`,
// server-sent events) with the admin token, keeps five minutes of
// snapshots, and draws rates and latency percentiles from their
// differences. No framework, no build step: this file is served as is.
"use strict";

const HISTORY_MS = 5 * 60 * 1000;
const WINDOW_MS = 60 * 1000;
const COLORS = ["#0b5cad", "#a4161a", "#1b6e32", "#7a3e9d", "#b35c00", "#00707a", "#5a5a5a", "#c2185b"];

let token = sessionStorage.getItem("ferry-token") || "";
let snapshots = [];
let stream = null;

const $ = (id) => document.getElementById(id);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setStatus(text) {
  $("connection").textContent = text;
}

async function connect() {
  if (stream) stream.abort();
  stream = new AbortController();
  setStatus("Connecting…");
  let response;
  try {
    response = await fetch("/v1/events", {
      headers: { Authorization: `Bearer ${token}` },
      signal: stream.signal,
    });
  } catch (error) {
    if (error.name !== "AbortError") retry("the host cannot be reached");
    return;
  }
  if (response.status === 401) {
    sessionStorage.removeItem("ferry-token");
    $("login").hidden = false;
    $("board").hidden = true;
    setStatus("The token was refused");
    return;
  }
  if (!response.ok) {
    retry(`the host answered ${response.status}`);
    return;
  }
  $("login").hidden = true;
  $("board").hidden = false;
  setStatus("Live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name !== "AbortError") retry("the stream broke");
      return;
    }
    if (chunk.done) {
      retry("the stream ended");
      return;
    }
    pending += chunk.value;
    let end;
    while ((end = pending.indexOf("\n\n")) >= 0) {
      const event = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) receive(JSON.parse(data));
    }
  }
}

function retry(why) {
  setStatus(`Disconnected (${why}); retrying…`);
  setTimeout(connect, 2000);
}

function receive(snapshot) {
  snapshots.push(snapshot);
  const oldest = snapshot.time_ms - HISTORY_MS;
  while (snapshots.length > 2 && snapshots[0].time_ms < oldest) snapshots.shift();
  render(snapshot);
}

// --- figures -------------------------------------------------------------

const key = (route) => `${route.app}\u0000${route.route}\u0000${route.component}`;
const sum = (values) => values.reduce((a, b) => a + b, 0);
const errorsOf = (route) => route.requests["5xx"] || 0;
const totalOf = (route) => sum(Object.values(route.requests));

/// The snapshot closest to `ms` before the newest, for a window's start.
function baseline(ms) {
  const newest = snapshots[snapshots.length - 1];
  let base = snapshots[0];
  for (const s of snapshots) {
    if (s.time_ms <= newest.time_ms - ms) base = s;
  }
  return base;
}

function routesBy(snapshot) {
  return new Map(snapshot.routes.map((r) => [key(r), r]));
}

/// Requests/s, errors/s and duration percentiles of `routes` (of the
/// newest snapshot) over the last minute.
function windowFigures(routes) {
  const newest = snapshots[snapshots.length - 1];
  const base = baseline(WINDOW_MS);
  const seconds = Math.max((newest.time_ms - base.time_ms) / 1000, 1);
  const before = routesBy(base);
  let requests = 0;
  let errors = 0;
  let buckets = null;
  for (const route of routes) {
    const old = before.get(key(route));
    requests += totalOf(route) - (old && base !== newest ? totalOf(old) : 0);
    errors += errorsOf(route) - (old && base !== newest ? errorsOf(old) : 0);
    const delta = route.duration_buckets.map(([le, count], i) => [
      le,
      count - (old && base !== newest && old.duration_buckets[i] ? old.duration_buckets[i][1] : 0),
    ]);
    buckets = buckets ? buckets.map(([le, c], i) => [le, c + delta[i][1]]) : delta;
  }
  return {
    rate: requests / seconds,
    errors: errors / seconds,
    p50: percentile(buckets, 0.5),
    p95: percentile(buckets, 0.95),
    p99: percentile(buckets, 0.99),
  };
}

/// The upper bound of the bucket holding quantile `q` (as Prometheus'
/// histogram_quantile does, without interpolating), or null.
function percentile(buckets, q) {
  if (!buckets || buckets.length === 0) return null;
  const total = buckets[buckets.length - 1][1];
  if (total <= 0) return null;
  for (const [le, count] of buckets) {
    if (count >= q * total) return le === null ? Infinity : le;
  }
  return null;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (!Number.isFinite(seconds)) return "> 16 s";
  if (seconds < 0.001) return `≤ ${(seconds * 1e6).toFixed(0)} µs`;
  if (seconds < 1) return `≤ ${(seconds * 1e3).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
  return `≤ ${seconds.toFixed(1)} s`;
}

const rate = (value) => (value < 10 ? value.toFixed(2) : value.toFixed(0));

// --- rendering -----------------------------------------------------------

function render(snapshot) {
  const appNames = snapshot.apps.map((a) => a.name);
  const colors = new Map(appNames.map((name, i) => [name, COLORS[i % COLORS.length]]));
  renderApps(snapshot);
  renderRoutes(snapshot);
  renderCharts(appNames, colors);
  renderPools(snapshot);
  renderNodes(snapshot);
  renderTriggers(snapshot);
  renderLog($("errors"), snapshot.failures.slice().reverse(), (f) =>
    `${f.time} ${f.app} ${f.route} ${f.status ?? ""} ${f.message} (request ${f.request_id})`, "error");
  renderLog($("logs"), snapshot.logs.slice().reverse(), (l) =>
    `${l.time} ${l.app}/${l.component} ${l.stream}: ${l.message}`);
  renderHistory(snapshot);
}

function renderApps(snapshot) {
  const body = $("apps").tBodies[0];
  const rows = [];
  for (const app of snapshot.apps) {
    const routes = snapshot.routes.filter((r) => r.app === app.name);
    const figures = windowFigures(routes);
    const total = sum(routes.map(totalOf));
    const versions = snapshot.versions[app.name] || [];
    const canRollBack = versions.some((v) => app.version !== null && v.version < app.version);
    const button = el("button", {
      type: "button",
      class: "secondary",
      "data-app": app.name,
      "aria-label": `Roll back ${app.name} to its previous version`,
    }, "Roll back");
    button.disabled = !canRollBack;
    button.addEventListener("click", () => rollback(app.name, button));
    rows.push(el("tr", { "data-app": app.name },
      el("th", { scope: "row" }, app.name),
      el("td", { class: "num", "data-field": "version" }, app.version ?? "–"),
      el("td", { class: `status-${app.status}` }, app.error ? `${app.status}: ${app.error}` : app.status),
      el("td", {}, [...app.routes, ...app.hostnames.map((h) => `(host ${h})`)].join(" ")),
      el("td", { class: "num", "data-field": "requests" }, total),
      el("td", { class: "num" }, rate(figures.rate)),
      el("td", { class: "num", "data-field": "errors" }, rate(figures.errors)),
      el("td", { class: "num" }, duration(figures.p50)),
      el("td", { class: "num" }, duration(figures.p95)),
      el("td", { class: "num" }, duration(figures.p99)),
      el("td", {}, button),
    ));
  }
  // Keep focus on a rollback button across the redraw.
  const focused = document.activeElement?.dataset?.app;
  body.replaceChildren(...rows);
  if (focused) body.querySelector(`button[data-app="${CSS.escape(focused)}"]`)?.focus();
}

function renderRoutes(snapshot) {
  const body = $("routes").tBodies[0];
  body.replaceChildren(...snapshot.routes.map((route) => {
    const figures = windowFigures([route]);
    return el("tr", {},
      el("td", {}, route.app),
      el("th", { scope: "row" }, route.route),
      el("td", {}, route.component),
      el("td", { class: "num" }, rate(figures.rate)),
      el("td", { class: "num" }, rate(figures.errors)),
      el("td", { class: "num" }, duration(figures.p50)),
      el("td", { class: "num" }, duration(figures.p95)),
      el("td", { class: "num" }, duration(figures.p99)),
    );
  }));
}

/// Per app, (time, requests/s, errors/s) between successive snapshots.
function series(appName) {
  const points = [];
  for (let i = 1; i < snapshots.length; i++) {
    const [a, b] = [snapshots[i - 1], snapshots[i]];
    const seconds = Math.max((b.time_ms - a.time_ms) / 1000, 0.001);
    const before = routesBy(a);
    let requests = 0;
    let errors = 0;
    for (const route of b.routes.filter((r) => r.app === appName)) {
      const old = before.get(key(route));
      requests += totalOf(route) - (old ? totalOf(old) : 0);
      errors += errorsOf(route) - (old ? errorsOf(old) : 0);
    }
    points.push([b.time_ms, Math.max(requests, 0) / seconds, Math.max(errors, 0) / seconds]);
  }
  return points;
}

function renderCharts(appNames, colors) {
  const all = new Map(appNames.map((name) => [name, series(name)]));
  drawChart($("rate-chart"), all, colors, 1);
  drawChart($("error-chart"), all, colors, 2);
  $("legend").replaceChildren(...appNames.map((name) => {
    const item = el("li", {}, name);
    item.style.setProperty("--swatch", colors.get(name));
    return item;
  }));
}

function drawChart(svg, all, colors, index) {
  const [width, height, left, bottom] = [600, 160, 40, 18];
  const newest = snapshots[snapshots.length - 1].time_ms;
  const start = newest - HISTORY_MS;
  let max = 1;
  for (const points of all.values()) for (const p of points) max = Math.max(max, p[index]);
  const x = (t) => left + ((t - start) / HISTORY_MS) * (width - left - 4);
  const y = (v) => height - bottom - (v / max) * (height - bottom - 8);
  const ns = "http://www.w3.org/2000/svg";
  const node = (tag, attributes, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const children = [
    node("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#c9ccd1" }),
    node("text", { x: 2, y: 12 }, rate(max)),
    node("text", { x: 2, y: height - bottom }, "0"),
    node("text", { x: left, y: height - 4 }, "−5 min"),
    node("text", { x: width - 30, y: height - 4 }, "now"),
  ];
  for (const [name, points] of all) {
    if (points.length === 0) continue;
    children.push(node("polyline", {
      points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[index]).toFixed(1)}`).join(" "),
      fill: "none",
      stroke: colors.get(name),
      "stroke-width": 2,
    }));
  }
  svg.replaceChildren(...children);
}

function renderPools(snapshot) {
  $("pools").replaceChildren(...snapshot.pools.map((pool) => {
    const used = pool.component_instances ?? 0;
    const capacity = pool.instance_pool_capacity ?? 0;
    return el("p", {},
      el("label", { for: `pool-${pool.engine}` }, `${pool.engine}: ${used} of ${capacity} instances in use `),
      el("meter", { id: `pool-${pool.engine}`, min: 0, max: capacity, value: used, high: capacity * 0.8 }),
    );
  }));
}

function renderNodes(snapshot) {
  const nodes = snapshot.nodes;
  $("nodes-section").hidden = !nodes;
  if (!nodes) return;
  $("nodes").tBodies[0].replaceChildren(...nodes.map((node) =>
    el("tr", { "data-node": node.name },
      el("th", { scope: "row" }, node.name),
      el("td", {}, `${(node.heartbeat_age_ms / 1000).toFixed(1)} s ago`),
      el("td", { "data-field": "apps" }, node.apps.map((a) =>
        a.version === null ? `${a.name} (${a.status})` : `${a.name}@${a.version}`).join(" ") || "–"),
      el("td", { "data-field": "behind", class: node.behind.length ? "error" : "" },
        node.behind.join(" ") || "–"),
    )));
}

function renderTriggers(snapshot) {
  const triggers = snapshot.triggers || [];
  $("triggers-section").hidden = triggers.length === 0;
  $("triggers").tBodies[0].replaceChildren(...triggers.map((t) =>
    el("tr", { "data-trigger": `${t.app}/${t.trigger}` },
      el("th", { scope: "row" }, t.trigger),
      el("td", {}, t.app),
      el("td", {}, t.component),
      el("td", { "data-field": "connected", class: t.connected ? "" : "error" },
        t.connected ? "connected" : "reconnecting"),
      el("td", { "data-field": "invocations" }, String(t.invocations)),
      el("td", { "data-field": "failures", class: t.failures ? "error" : "" }, String(t.failures)),
    )));
}

function renderLog(list, items, text, className) {
  list.replaceChildren(...items.map((item) => el("li", className ? { class: className } : {}, text(item))));
}

function renderHistory(snapshot) {
  $("history").replaceChildren(...Object.entries(snapshot.versions).map(([name, versions]) =>
    el("div", { class: "history" },
      el("h3", {}, name),
      el("ol", { reversed: "" }, ...versions.slice().reverse().map((v) =>
        el("li", {}, `version ${v.version}, deployed ${v.deployed_at}${v.current ? " (serving)" : ""}`))))));
}

async function rollback(name, button) {
  button.disabled = true;
  $("action-status").textContent = `Rolling back ${name}…`;
  try {
    const response = await fetch(`/v1/apps/${encodeURIComponent(name)}/rollback`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: "{}",
    });
    const answer = await response.json();
    $("action-status").textContent = response.ok
      ? `${name} serves version ${answer.version} again`
      : `Rollback of ${name} refused: ${answer.error}`;
  } catch (error) {
    $("action-status").textContent = `Rollback of ${name} failed: ${error.message}`;
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("ferry-token", token);
  snapshots = [];
  connect();
});

if (token) connect();
