// gpu-reactor console: renders the reactor's server-sent events. Every value is set as
// text (textContent, createTextNode), never as HTML, so a task type or an error message
// containing markup shows as what it is.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const HEALTH = { stale: "✖", stuck_task: "✖", spawn_overdue: "✖", starting: "…", draining: "↓", busy: "●", idle: "○" };
  const LEVEL = { critical: "CRITICAL", warning: "WARNING", info: "INFO" };
  let history = { bucket_sec: 5, window_sec: 3600, fields: [], points: [] };
  let last = null; // the latest state document
  let receivedAt = 0; // Date.now() when it came

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function setText(id, value) { const n = $(id); if (n) n.textContent = value === null || value === undefined || value === "" ? "-" : String(value); }
  function cls(prefix, word) { return prefix + String(word || "").replace(/[^A-Za-z0-9_-]/g, "_"); }

  function age(sec) {
    if (sec === null || sec === undefined) return "-";
    const s = Math.max(0, Math.floor(sec));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
  }
  function usd(v, digits) { return v === null || v === undefined ? "-" : "$" + Number(v).toFixed(digits === undefined ? 2 : digits); }
  function clock(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
  }
  function since(iso) { return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : null; }
  function workerLink(id) { return id ? el("a", { href: "/workers/" + encodeURIComponent(id) }, id) : "-"; }
  function taskLink(id, text) { return id ? el("a", { href: "/tasks/" + encodeURIComponent(id), class: "mono", title: id }, text || id.slice(0, 8)) : "-"; }
  function word(prefix, value, symbol) {
    return el("span", { class: (prefix === "h-" ? "health " : "status ") + cls(prefix, value) }, (symbol ? symbol + " " : "") + (value || "-"));
  }
  function fillRows(tableId, rows, empty, columns) {
    const body = $(tableId).tBodies[0];
    const fresh = document.createElement("tbody");
    if (!rows.length) fresh.appendChild(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
    for (const row of rows) fresh.appendChild(row);
    body.replaceWith(fresh);
  }

  // --- sections ------------------------------------------------------------------------
  function renderHeader(s) {
    const role = $("role");
    role.className = "badge " + cls("role-", s.role);
    role.textContent = s.role === "leader" ? "LEADER" : s.role === "standby" ? "STANDBY" : String(s.role).toUpperCase();
    $("main").dataset.snapshotAt = s.snapshot_at || "";
    $("main").dataset.role = s.role;
    setText("foot", `gpu-reactor ${s.version} · ${s.provider} provider · pid ${s.pid} on ${s.host} · up ${age(s.uptime_sec)}`);
  }

  function renderAlerts(s) {
    const list = $("alert-list");
    const items = s.alerts.map((a) => el("li", { class: a.level, "data-alert": a.name },
      el("span", { class: "level" }, LEVEL[a.level] || a.level), a.name.replace(/_/g, " ") + ": ", a.message));
    if (!items.length) items.push(el("li", { class: "none" }, "✔ none: nothing needs a look"));
    list.replaceChildren(...items);
    const serious = s.alerts.filter((a) => a.level !== "info").length;
    $("alert-count").textContent = serious ? `(${serious})` : "";
  }

  function renderQueue(s) {
    const q = s.queue;
    if (!q) {
      for (const id of ["q-queued", "q-due", "q-waiting", "q-deps", "q-blocked", "q-types", "q-in-progress", "q-oldest", "q-stuck"]) setText(id, "-");
    } else {
      setText("q-queued", q.queued);
      setText("q-due", q.claimable);
      setText("q-waiting", q.waiting_retry);
      setText("q-deps", q.blocked_waiting);
      setText("q-blocked", q.blocked_for_good);
      setText("q-types", q.other_types);
      setText("q-in-progress", q.in_progress);
      setText("q-oldest", age(q.oldest_queued_age_sec));
      setText("q-stuck", q.stuck_tasks);
    }
    const f = s.finished_last_hour;
    setText("q-finished", f ? `${f.complete} complete, ${f.failed} failed, ${f.cancelled} cancelled (read ${age(Date.now() / 1000 - f.at)} ago)` : "not read yet");
  }

  function counts(obj) {
    const parts = Object.entries(obj).map(([k, v]) => `${v} ${k}`);
    return parts.length ? parts.join(", ") : "none";
  }

  function renderFleet(s) {
    const w = s.workers, b = s.budget, L = s.limits;
    setText("w-count", s.queue ? w.total : "-");
    setText("w-desired", s.queue ? s.queue.desired_workers : "-");
    setText("w-max", L.MAX_ACTIVE_GPUS);
    setText("w-by-status", "by status: " + counts(w.by_status));
    setText("w-by-health", "by health: " + counts(w.by_health));
    setText("s-burn", usd(b.hourly_burn_usd) + "/h");
    const today = s.finished_last_hour ? s.finished_last_hour.spent_today_usd : null;
    setText("s-today", usd(today));
    setText("s-cap", b.max_hourly_spend_usd ? `${usd(b.max_hourly_spend_usd)}/h (${Math.round(100 * (b.used_ratio || 0))}% used)` : "no cap");
    const gate = b.spawn_blocked_until ? `spawning PAUSED until ${clock(b.spawn_blocked_until)}: ${b.spawn_blocked_reason || "-"}` : "spawning allowed";
    setText("s-gate", `${gate} · a new worker is expected to cost ${usd(b.expected_worker_price_usd, 3)}/h`);
  }

  function renderReactor(s) {
    let who;
    if (s.role === "leader") who = "This replica leads: it decides and acts.";
    else if (s.role === "standby") {
      const l = s.leader;
      who = s.leader_checked ? (l ? `Standby. The leader is database session pid ${l.pid} (${l.application_name || "?"} from ${l.client_addr || "local"}); its console is on its own host.` : "Standby, and NO reactor holds the leader lock.") : "Standby: waiting to lead.";
    } else who = `This reactor is ${s.role}.`;
    setText("r-who", who);
    const l = s.listener;
    setText("r-listener", `LISTEN ${l.connected ? "connected" : "DOWN"} · ${l.reconnects} reconnect(s)` + (l.last_error ? ` · last error: ${l.last_error}` : ""));
    const r = s.reconcile;
    setText("r-reconcile", `${r.count} reconcile(s); last ${r.last_kind || "-"} at ${clock(r.last_at)}` + (r.last_duration_ms !== null ? ` in ${r.last_duration_ms} ms` : "") + ` · last sweep ${clock(r.last_sweep_at)}` + (r.last_error ? ` · last error: ${r.last_error}` : ""));
    tick();
  }

  function tick() {
    if (!last) return;
    const extra = (Date.now() - receivedAt) / 1000;
    const snap = last.snapshot_age_sec === null ? "no snapshot yet" : `as of the snapshot of ${clock(last.snapshot_at)} (${age(last.snapshot_age_sec + extra)} ago)`;
    setText("r-snapshot", `Worker ages and health are ${snap}.`);
  }

  function renderWorkers(s) {
    const rows = s.workers.shown.map((w) => el("tr", { "data-worker-id": w.id, "data-health": w.health },
      el("td", { class: "mono" }, workerLink(w.id)),
      el("td", {}, word("s-", w.status)),
      el("td", {}, word("h-", w.health, HEALTH[w.health])),
      el("td", {}, w.gpu_type || "-"),
      el("td", { class: "num" }, usd(w.cost_per_hr, 3)),
      el("td", { class: "num" }, age(w.heartbeat_age_sec)),
      el("td", {}, taskLink(w.current_task_id)),
      el("td", { class: "num" }, age(w.current_task_age_sec)),
      el("td", { class: "mono" }, w.pod_id || "-"),
      el("td", { class: "mono" }, w.pool || "-")));
    fillRows("workers-table", rows, s.role === "standby" ? "a standby has no snapshot of the fleet" : "no live worker", 10);
    setText("workers-note", s.workers.total > s.workers.shown.length ? `(showing ${s.workers.shown.length} of ${s.workers.total}; /status has all)` : `(${s.workers.total})`);
    const ended = s.ended.map((w) => el("tr", { "data-worker-id": w.id },
      el("td", { class: "mono" }, workerLink(w.id)), el("td", {}, clock(w.at)),
      el("td", { class: "wrap" }, w.reason), el("td", { class: "wrap" }, w.detail)));
    fillRows("ended-table", ended, "none", 4);
  }

  // With POOLS_FILE: a row per pool, and the tasks no pool runs (without it, hidden).
  function renderPools(s) {
    $("pools").hidden = !s.routed;
    if (!s.routed) return;
    const rows = s.pools.map((p) => el("tr", { "data-pool": p.name },
      el("td", { class: "mono" }, p.name),
      el("td", { class: "mono wrap" }, p.task_types.join(", ")),
      el("td", { class: "wrap" }, p.gpu_types.join(", ") || "-"),
      el("td", { class: "num" }, `${p.live_workers} / ${p.desired_workers} / ${p.max_active_gpus}`),
      el("td", { class: "num" }, p.demand),
      el("td", { class: "num", title: counts(p.queued_by_type) }, p.queued),
      el("td", { class: "num" }, `${p.spilled_in} / ${p.spilled_out}`),
      el("td", { class: "num" }, usd(p.hourly_burn_usd) + (p.max_hourly_spend_usd ? " of " + usd(p.max_hourly_spend_usd) : "")),
      el("td", {}, p.spawn_blocked_until ? el("span", { class: "status s-spawning" }, `PAUSED until ${clock(p.spawn_blocked_until)}: ${p.spawn_blocked_reason || "-"}`) : "allowed")));
    fillRows("pools-table", rows, "no pool", 9);
    setText("pools-note", `(${s.pools.length}, in POOLS_FILE's order)`);
    const u = s.unrouted, line = $("unrouted");
    line.hidden = !u.total;
    line.textContent = u.total ? `${u.total} queued task(s) of types no pool runs, nothing is spawned for them: ${counts(u.by_type)}` : "";
  }

  function renderActions(s) {
    const rows = s.actions.map((a) => el("tr", {},
      el("td", {}, clock(a.at)), el("td", {}, a.kind), el("td", {}, word("o-", a.outcome)),
      el("td", { class: "mono" }, workerLink(a.worker_id)),
      el("td", { class: "wrap" }, a.reason), el("td", { class: "wrap" }, a.detail || (a.pod_id ? "pod " + a.pod_id : ""))));
    fillRows("actions-table", rows, "no action yet", 6);
  }

  function renderTasks(s) {
    const rows = s.recent_tasks.map((t) => el("tr", { "data-task-id": t.id },
      el("td", {}, taskLink(t.id)), el("td", { class: "mono wrap task-type" }, t.task_type),
      el("td", {}, word("t-", t.status)), el("td", { class: "num" }, `${t.attempts}/${t.max_attempts}`),
      el("td", { class: "mono" }, workerLink(t.worker_id)), el("td", {}, clock(t.updated_at)),
      el("td", { class: "num" }, t.processing_sec === null ? "-" : Number(t.processing_sec).toFixed(1) + "s"),
      el("td", { class: "wrap" }, t.error_message || "")));
    fillRows("tasks-table", rows, "no task changed in the last hour", 8);
    setText("tasks-note", "(changed in the last hour, newest first)");
  }

  // --- charts --------------------------------------------------------------------------
  function mergeHistory(tail) {
    const byAt = new Map(history.points.map((p) => [p[0], p]));
    for (const p of tail.points) byAt.set(p[0], p);
    const start = Date.now() / 1000 - tail.window_sec;
    history = { ...tail, points: [...byAt.values()].filter((p) => p[0] >= start).sort((a, b) => a[0] - b[0]) };
  }

  function chart(id, series, format) {
    const svg = $(id), W = 300, H = 90, top = 10, bottom = 80;
    // The axis spans the data there is (at least 5 minutes), up to the whole hour.
    const now = Date.now() / 1000;
    const first = history.points.length ? history.points[0][0] : now;
    const span = Math.min(history.window_sec, Math.max(300, now - first + history.bucket_sec));
    const start = now - span;
    const idx = (name) => history.fields.indexOf(name);
    let max = 0;
    for (const s of series) for (const p of history.points) max = Math.max(max, p[idx(s.field)]);
    const ymax = max > 0 ? max : 1;
    const x = (t) => Math.max(0, ((t - start) / span) * W);
    const y = (v) => bottom - (v / ymax) * (bottom - top);
    const nodes = [];
    const line = (x1, y1, x2, y2) => { const n = document.createElementNS(SVG, "line"); for (const [k, v] of Object.entries({ x1, y1, x2, y2, class: "axis" })) n.setAttribute(k, v); return n; };
    nodes.push(line(0, bottom, W, bottom), line(0, top, W, top));
    const text = (tx, ty, value, anchor) => { const n = document.createElementNS(SVG, "text"); n.setAttribute("x", tx); n.setAttribute("y", ty); n.setAttribute("text-anchor", anchor); n.textContent = value; return n; };
    nodes.push(text(2, top - 2, format(max), "start"), text(2, H - 1, `-${Math.round(span / 60)} min`, "start"), text(W - 2, H - 1, "now", "end"));
    for (const s of series) {
      const pts = [];
      let prev = null;
      for (const p of history.points) {
        const v = p[idx(s.field)];
        if (prev !== null) pts.push(`${x(p[0]).toFixed(1)},${y(prev).toFixed(1)}`); // a step
        pts.push(`${x(p[0]).toFixed(1)},${y(v).toFixed(1)}`);
        prev = v;
      }
      if (prev !== null) pts.push(`${W},${y(prev).toFixed(1)}`);
      const poly = document.createElementNS(SVG, "polyline");
      poly.setAttribute("points", pts.join(" "));
      poly.setAttribute("class", s.cls);
      nodes.push(poly);
    }
    svg.replaceChildren(...nodes);
    const latest = history.points.length ? history.points[history.points.length - 1] : null;
    const legend = $(id + "-sum");
    legend.replaceChildren();
    for (const s of series) {
      legend.appendChild(el("span", { class: "key " + s.key }));
      legend.appendChild(document.createTextNode(`${s.label} ${latest ? format(latest[idx(s.field)]) : "-"} `));
    }
    legend.appendChild(document.createTextNode(`(highest ${format(max)}; one point per ${history.bucket_sec}s)`));
  }

  function renderCharts() {
    chart("c-queue", [
      { field: "queued", label: "Queued", cls: "s1", key: "k1" },
      { field: "due", label: "due", cls: "s1 dash", key: "k1 dash" },
      { field: "in_progress", label: "In Progress", cls: "s2", key: "k2" }], (v) => String(v));
    chart("c-workers", [
      { field: "active", label: "active", cls: "s4", key: "k4" },
      { field: "spawning", label: "spawning", cls: "s1", key: "k1" },
      { field: "terminating", label: "terminating", cls: "s2", key: "k2" }], (v) => String(v));
    chart("c-usd", [{ field: "usd_per_hour", label: "USD/h", cls: "s3", key: "k3" }], (v) => "$" + Number(v).toFixed(2));
  }

  function render(s) {
    last = s;
    receivedAt = Date.now();
    renderHeader(s); renderAlerts(s); renderQueue(s); renderFleet(s); renderReactor(s);
    renderPools(s); renderWorkers(s); renderActions(s); renderTasks(s);
    if (s.history_tail) mergeHistory(s.history_tail);
    renderCharts();
  }

  // --- the stream ----------------------------------------------------------------------
  function connect() {
    const conn = $("conn");
    const source = new EventSource("/console/events");
    source.addEventListener("history", (ev) => { history = JSON.parse(ev.data); if (last) renderCharts(); });
    source.addEventListener("state", (ev) => {
      render(JSON.parse(ev.data));
      conn.className = "conn";
      conn.textContent = "live · updated " + new Date().toLocaleTimeString([], { hour12: false });
    });
    source.addEventListener("error", () => {
      conn.className = "conn lost";
      if (source.readyState === EventSource.CLOSED) {
        conn.replaceChildren("disconnected: ", el("a", { href: "/login?next=%2F" }, "sign in again"), " or reload");
      } else {
        conn.textContent = "connection lost; reconnecting…";
      }
    });
  }

  setInterval(tick, 1000);
  connect();
})();
