/* streamq dashboard: plain JavaScript, no build step. Hash routes; live updates over SSE. */
"use strict";

const STATUSES = ["pending", "scheduled", "processing", "completed", "failed", "cancelled"];
const MARK = { pending: "…", scheduled: "◷", processing: "▶", completed: "✓", failed: "✗", cancelled: "⊘", waiting: "⋯", skipped: "↷", running: "▶" };
const RANGES = [[300, "5 min"], [900, "15 min"], [3600, "1 h"], [21600, "6 h"], [86400, "24 h"]];
const main = document.getElementById("main");
const state = { view: null, timers: [], charts: [], range: 300 };
const listeners = new Set(); // functions called with each batch of lifecycle events
// Who is logged in (GET /dash/session): without STREAMQ_API_KEYS there is no login and every scope is
// allowed; with keys, actions the key's scopes do not allow are not shown at all.
const session = { auth: false, name: null, scopes: ["submit", "read", "admin"], csrf: null };
const can = (scope) => session.scopes.includes(scope);

// ---------- helpers -------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const fmtJson = (v) => (v === null || v === undefined ? "—" : JSON.stringify(v, null, 2));
function fmtSecs(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}
const axisSecs = (v) => (v === 0 ? "0" : v < 1 ? `${+(v * 1000).toFixed(1)} ms` : `${+v.toFixed(2)} s`);
// x axis: one line per tick (hh:mm, or hh:mm:ss on ranges up to 15 min): uPlot's default adds a date
// line under the first tick that overlapped the chart's left edge and the next label
const axisTime = (v) => new Date(v * 1000).toLocaleTimeString([], state.range <= 900 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" } : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const axisNum = (v) => String(+v.toFixed(2));
const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, `${MARK[status] || ""} ${status}`);

class HttpError extends Error {
  constructor(status, body) { super(describe(body) || `HTTP ${status}`); this.status = status; this.body = body; }
}
function describe(body) {
  if (!body) return "";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  return "";
}
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["content-type"] = "application/json"; }
  if (session.csrf && method !== "GET") init.headers["x-csrf-token"] = session.csrf;
  const res = await fetch(path, init);
  if (res.status === 401 && session.auth) { location.href = "/login"; throw new HttpError(401, { detail: "logged out" }); }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) throw new HttpError(res.status, data);
  return data;
}
function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message; el.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}
const unavailable = (what) => h("p", { class: "notice", "data-testid": "unavailable" }, `${what} is not available on this server (the api answered 404).`);
function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }
function debounce(fn, ms) { let t = null; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
// At most one call per `ms` while events keep coming (a debounce would wait for a quiet moment that a
// busy queue never has): the first event schedules a call `wait` ms later; events until then join it.
function throttle(fn, wait, ms) {
  let due = false; let last = 0;
  return () => {
    if (due) return;
    due = true;
    setTimeout(() => { due = false; last = Date.now(); fn(); }, Math.max(wait, ms - (Date.now() - last)));
  };
}
function onEvents(fn) { listeners.add(fn); state.cleanup.push(() => listeners.delete(fn)); }

// ---------- live events ---------------------------------------------------------------------------
const live = document.getElementById("live");
let source = null;
let pollTimer = null;
function connect() {
  source = new EventSource("/dash/events");
  source.addEventListener("hello", () => setLive(true));
  source.onmessage = (e) => { const batch = JSON.parse(e.data); for (const fn of [...listeners]) fn(batch); };
  source.onerror = () => setLive(false);
}
function setLive(ok) {
  live.dataset.state = ok ? "live" : "polling";
  live.textContent = ok ? "live" : "polling";
  if (ok && pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  if (!ok && !pollTimer) pollTimer = setInterval(() => { for (const fn of [...listeners]) fn([{ event: "resync" }]); }, 3000);
}

// ---------- router --------------------------------------------------------------------------------
const routes = { overview: overview, tasks: tasks, queues: queues, task: taskDetail, create: create, workers: workers, schedules: schedules, dead: dead, workflows: workflowsPage, workflow: workflowDetail };
function route() {
  for (const t of state.timers) clearInterval(t);
  for (const fn of state.cleanup || []) fn();
  for (const c of state.charts) c.destroy();
  state.timers = []; state.cleanup = []; state.charts = [];
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("?")[0].split("/");
  const view = routes[name] ? name : "overview";
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.route === (view === "task" ? "tasks" : view === "workflow" ? "workflows" : view)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  main.replaceChildren();
  state.view = view;
  Promise.resolve(routes[view](...rest.map(decodeURIComponent))).catch((e) => main.append(h("p", { class: "notice" }, `Could not load: ${e.message}`)));
}
window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); });
// the skip link moves focus to the content without changing the address (the hash is the router's)
document.querySelector("a.skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });

// ---------- Overview ------------------------------------------------------------------------------
async function overview() {
  const refused = h("p", { class: "notice", role: "alert", "data-testid": "writes-refused", hidden: true });
  main.append(h("h1", {}, "Overview"), refused);
  const cards = h("div", { class: "cards", "data-testid": "cards" });
  const labels = [...STATUSES, "dead_letter", "total"];
  const numbers = {};
  for (const k of labels) {
    numbers[k] = h("div", { class: "n", "data-testid": `count-${k}` }, "…");
    const link = STATUSES.includes(k) ? `#/tasks?status=${k}` : k === "dead_letter" ? "#/dead" : "#/tasks";
    cards.append(h("a", { class: `card ${k}`, href: link, style: "text-decoration:none;color:inherit" }, numbers[k], h("div", { class: "l" }, `${MARK[k] || ""} ${k.replace("_", " ")}`)));
  }
  const picker = h("select", { "aria-label": "Chart range", onchange: (e) => { state.range = Number(e.target.value); drawCharts(); } },
    RANGES.map(([s, label]) => h("option", { value: s, selected: s === state.range }, label)));
  const source = h("span", { class: "muted" });
  const charts = h("div", { class: "charts" });
  main.append(cards, h("div", { class: "row", style: "margin-top:14px" }, h("label", {}, "Range", picker), source), charts);

  async function loadStats() {
    const s = await api("GET", "/api/stats");
    for (const k of labels) numbers[k].textContent = s[k];
    const health = await api("GET", "/api/health").catch(() => ({})); // writes: "ok" or why Redis refuses them
    refused.hidden = !health.writes || health.writes === "ok" || health.writes === "unknown";
    refused.textContent = health.writes === "memory_guard"
      ? `Redis memory at ${Math.round(health.memory_ratio * 100)}% of maxmemory: new tasks answer 503 until pruning frees memory; workers and reads go on.`
      : `Redis refuses writes (${health.writes}): submitting and changing tasks answer 503 until it accepts them again; reading works.`;
  }
  const specs = [
    { id: "throughput", title: "Throughput (tasks/s)", series: [["completed_rate", "completed", "#1f7a3a"], ["failed_rate", "failed", "#b3261e"]], fmt: (v) => v.toFixed(2), axis: axisNum },
    { id: "depth", title: "Queue depth by priority", series: [5, 4, 3, 2, 1].map((p, i) => [`depth.${p}`, `priority ${p}`, ["#b3261e", "#d9822b", "#2454c5", "#1f7a3a", "#5b6675"][i]]), fmt: (v) => v.toFixed(0), axis: (v) => (Number.isInteger(v) ? String(v) : ""), integer: true },
    { id: "wait", title: "Wait time (due → start)", series: [["wait_p50", "p50", "#2454c5"], ["wait_p95", "p95", "#d9822b"]], fmt: (v) => fmtSecs(v), axis: axisSecs },
    { id: "run", title: "Run time", series: [["run_p50", "p50", "#1f7a3a"], ["run_p95", "p95", "#b3261e"]], fmt: (v) => fmtSecs(v), axis: axisSecs },
  ];
  const boxes = {};
  for (const spec of specs) {
    boxes[spec.id] = h("div", { "data-testid": `chart-${spec.id}` });
    charts.append(h("section", { class: "chart", "aria-label": spec.title }, h("h2", {}, spec.title), boxes[spec.id]));
  }
  const pick = (p, key) => { const [a, b] = key.split("."); const v = b ? (p[a] || {})[b] : p[a]; return v === undefined || v === null ? null : Number(v); };
  async function drawCharts() {
    const hist = await api("GET", `/dash/history?range_s=${state.range}`);
    source.textContent = `history from ${hist.source === "prometheus" ? "Prometheus" : "the dashboard's samples in Redis"}, ${hist.points.length} points`;
    for (const c of state.charts) c.destroy();
    state.charts = [];
    const now = Date.now() / 1000;
    for (const spec of specs) {
      const box = boxes[spec.id];
      box.replaceChildren();
      const xs = hist.points.map((p) => p.t / 1000);
      const data = [xs, ...spec.series.map(([key]) => hist.points.map((p) => pick(p, key)))];
      const points = data.slice(1).reduce((n, s) => n + s.filter((v) => v !== null).length, 0);
      box.dataset.points = String(points);
      if (!points) { box.append(h("p", { class: "empty" }, "No data yet: samples arrive every 2 s while the stack runs.")); continue; }
      const width = Math.max(260, box.clientWidth || 260);
      // the legend shows each series' latest value while the cursor is off the chart (uPlot's is "--")
      const latest = data.map((s) => { for (let i = s.length - 1; i >= 0; i--) if (s[i] !== null) return i; return s.length - 1; });
      const showLatest = (u) => { if (u.cursor.idx == null) u.setLegend({ idxs: latest }, false); };
      const chart = new uPlot({
        width, height: 200, padding: [8, 28, 0, 0], // room on the right for the last time label
        hooks: { ready: [showLatest], setCursor: [showLatest] },
        series: [{}, ...spec.series.map(([, label, stroke]) => ({ label, stroke, width: 2, spanGaps: false, value: (u, v) => (v === null ? "—" : spec.fmt(v)) }))],
        axes: [{ space: 72, size: 34, values: (u, vals) => vals.map((v) => axisTime(v)) }, { size: 64, values: (u, vals) => vals.map((v) => spec.axis(v)) }],
        scales: {
          x: { time: true, range: () => [now - state.range, now] },
          y: { range: (u, min, max) => [0, max > 0 ? (spec.integer ? Math.max(4, Math.ceil(max * 1.2)) : max * 1.15) : 1] },
        },
      }, data, box);
      state.charts.push(chart);
    }
  }
  await Promise.all([loadStats(), drawCharts()]);
  const resize = debounce(() => { for (const c of state.charts) c.setSize({ width: Math.max(260, c.root.parentNode.clientWidth), height: 200 }); }, 100);
  window.addEventListener("resize", resize);
  state.cleanup.push(() => window.removeEventListener("resize", resize));
  const refresh = throttle(() => loadStats().catch(() => {}), 50, 500);
  onEvents(refresh);
  every(2000, () => drawCharts().catch(() => {}));
  every(5000, () => loadStats().catch(() => {}));
}

// ---------- Tasks ---------------------------------------------------------------------------------
function queryOf() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}
function actionButtons(task, after) {
  if (!can("admin")) return h("div", { class: "actions" });
  const act = (label, method, path, cls, confirmText) => h("button", {
    class: cls, "data-action": label.toLowerCase(), "aria-label": `${label} task ${task.id}`,
    onclick: async (e) => {
      if (confirmText && !confirm(confirmText)) return;
      e.target.disabled = true;
      try { await api(method, path); toast(`${label}: ${task.id}`); } catch (err) { toast(`${label} failed: ${err.message}`); }
      finally { e.target.disabled = false; after(); }
    },
  }, label);
  const out = [];
  if (task.status === "failed" || task.status === "cancelled") out.push(act("Retry", "POST", `/api/tasks/${task.id}/retry`, "primary"));
  if (task.status === "pending" || task.status === "scheduled" || (task.status === "processing" && !task.cancel_requested)) out.push(act("Cancel", "POST", `/api/tasks/${task.id}/cancel`, ""));
  if (["completed", "failed", "cancelled"].includes(task.status)) out.push(act("Delete", "DELETE", `/api/tasks/${task.id}`, "danger", `Delete task ${task.id}?`));
  return h("div", { class: "actions" }, out);
}
function taskRow(task, reload, { showError = true } = {}) {
  return h("tr", { "data-task": task.id },
    h("td", { class: "mono" }, h("a", { href: `#/task/${task.id}` }, task.id)),
    h("td", {}, task.type),
    h("td", { class: "hide-narrow" }, task.priority),
    h("td", {}, badge(task.status)),
    h("td", { class: "hide-narrow" }, task.attempts),
    h("td", { class: "hide-narrow" }, fmtTime(task.created_at)),
    h("td", { "data-testid": "task-queue" }, h("a", { href: `#/tasks?queue=${encodeURIComponent(task.queue || "")}` }, task.queue || "—")),
    showError ? h("td", { class: "error-text" }, task.error || "") : null,
    h("td", {}, actionButtons(task, reload)));
}
// Newer/Older buttons of a cursor-paged list; go(-1) or go(+1) moves a page.
function pagerControls(page, nextCursor, go) {
  return [
    h("button", { disabled: page === 0, onclick: () => go(-1) }, "← Newer"),
    h("span", { class: "muted" }, `page ${page + 1}`),
    h("button", { disabled: !nextCursor, onclick: () => go(1) }, "Older →")];
}

function taskTable(rows, { showError = true } = {}) {
  return h("div", { class: "table-wrap" }, h("table", { "data-testid": "task-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "type"), h("th", { class: "hide-narrow" }, "priority"), h("th", {}, "status"),
      h("th", { class: "hide-narrow" }, "attempts"), h("th", { class: "hide-narrow" }, "created"), h("th", {}, "queue"), showError ? h("th", {}, "error") : null, h("th", {}, "actions"))),
    h("tbody", {}, rows)));
}
function bulkRetryButton(after) {
  if (!can("admin")) return null;
  return h("button", { class: "primary", "data-action": "retry-failed", onclick: async (e) => {
    if (!confirm("Retry every failed task? The server does it in batches.")) return;
    e.target.disabled = true;
    try { const r = await api("POST", "/api/tasks/retry-failed"); toast(`Revived ${r.revived} failed task${r.revived === 1 ? "" : "s"}`); }
    catch (err) { toast(err.status === 404 ? "Bulk retry is not available on this server" : `Bulk retry failed: ${err.message}`); }
    finally { e.target.disabled = false; after(); }
  } }, "Retry all failed");
}
async function tasks() {
  const q = queryOf();
  main.append(h("h1", {}, "Tasks"));
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: q.status === s }, s)));
  const type = h("input", { name: "type", value: q.type || "", placeholder: "e.g. email", size: 12 });
  const queue = h("input", { name: "queue", value: q.queue || "", placeholder: "any", size: 10 });
  const priority = h("select", { name: "priority" }, h("option", { value: "" }, "any"), [5, 4, 3, 2, 1].map((p) => h("option", { value: p, selected: q.priority === String(p) }, p)));
  const find = h("input", { name: "id", placeholder: "task id", size: 28, class: "mono" });
  const filters = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (status.value) p.set("status", status.value);
    if (type.value.trim()) p.set("type", type.value.trim());
    if (queue.value.trim()) p.set("queue", queue.value.trim());
    if (priority.value) p.set("priority", priority.value);
    location.hash = `#/tasks?${p}`;
  } }, h("label", {}, "Status", status), h("label", {}, "Type", type), h("label", {}, "Queue", queue), h("label", {}, "Priority", priority), h("button", { type: "submit" }, "Filter"));
  const finder = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); if (find.value.trim()) location.hash = `#/task/${find.value.trim()}`; } },
    h("label", {}, "Find by id", find), h("button", { type: "submit" }, "Open"));
  const holder = h("div");
  const pager = h("div", { class: "pager" });
  main.append(h("div", { class: "row" }, filters, finder, bulkRetryButton(() => load().catch(() => {}))), holder, pager);
  const cursors = [null];
  let page = 0;
  let shown = new Set();
  // A reply can predate events that reach the page while it is on its way (a task created, then
  // started and completed during the GET: its row is not shown yet, so those events look like
  // someone else's). Tasks with events during a load are kept in `missed`: when the reply shows one
  // of them, the list is loaded again. Loads can overlap: an older reply never replaces a newer one.
  let asked = 0, drawn = 0, inFlight = 0;
  let missed = new Set();
  async function load() {
    const p = new URLSearchParams({ limit: "50" });
    for (const k of ["status", "type", "queue", "priority"]) if (q[k]) p.set(k, q[k]);
    if (cursors[page]) p.set("cursor", cursors[page]);
    const mine = ++asked;
    inFlight++;
    let data;
    try { data = await api("GET", `/api/tasks?${p}`); } finally { inFlight--; }
    if (mine < drawn) return;
    drawn = mine;
    shown = new Set(data.tasks.map((t) => t.id));
    holder.replaceChildren(data.tasks.length ? taskTable(data.tasks.map((t) => taskRow(t, load))) : h("p", { class: "muted" }, "No tasks match."));
    cursors[page + 1] = data.next_cursor;
    pager.replaceChildren(...pagerControls(page, data.next_cursor, (step) => { page += step; load(); }));
    const stale = [...missed].some((id) => shown.has(id));
    if (!inFlight) missed = new Set();
    if (stale) reload();
  }
  const reload = throttle(() => load().catch(() => {}), 50, 500);
  onEvents((batch) => {
    if (inFlight) for (const e of batch) if (e.task) missed.add(e.task);
    const fresh = (e) => page === 0 && e.event === "created" && (!q.queue || !e.queue || e.queue === q.queue);
    if (batch.some((e) => e.event === "resync" || shown.has(e.task) || fresh(e))) reload();
  });
  await load();
}

// ---------- Queues --------------------------------------------------------------------------------
// GET /api/queues: [{name, partitions, paused, stats: {pending, ...}, depth: {priority: n}, dead_letter}]
async function queues() {
  main.append(h("h1", {}, "Queues"), h("p", { class: "muted" }, "Every named queue, summed over its partitions. A paused queue still accepts tasks; workers start none of them until it is resumed."));
  const holder = h("div");
  main.append(holder);
  let drawn = null;
  const count = (qu, status) => { const c = qu.stats || qu.counts || qu; return c[status] ?? 0; };
  const depthOf = (qu) => [5, 4, 3, 2, 1].map((p) => [p, Number((qu.depth || {})[p] ?? 0)]);
  async function load() {
    let data;
    try { data = await api("GET", "/api/queues"); } catch (e) {
      holder.replaceChildren(e.status === 404 ? unavailable("Named queues") : h("p", { class: "notice" }, e.message));
      drawn = null;
      return;
    }
    const items = Array.isArray(data) ? data : data.queues || [];
    const key = JSON.stringify(items);
    if (key === drawn) return; // unchanged: keep the table (and the focus on its buttons)
    if (holder.querySelector("details[open]")) return; // a retention form is being edited: keep it
    drawn = key;
    const act = (qu, label, cls) => h("button", { class: cls, "data-action": label.toLowerCase(), "aria-label": `${label} queue ${qu.name}`, onclick: async (e) => {
      e.target.disabled = true;
      try { await api("POST", `/api/queues/${encodeURIComponent(qu.name)}/${label.toLowerCase()}`); toast(`${label}: ${qu.name}`); }
      catch (err) { toast(`${label} failed: ${err.message}`); }
      load().catch(() => {});
    } }, label);
    const cols = ["queue", "partitions", "state", ...STATUSES, "waiting (by priority 5…1)", "dead letters", "retention", "actions"];
    holder.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "queues" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((qu) => {
        const depth = depthOf(qu);
        return h("tr", { "data-queue": qu.name, "data-paused": String(Boolean(qu.paused)) },
          h("td", {}, h("a", { href: `#/tasks?queue=${encodeURIComponent(qu.name)}` }, qu.name)),
          h("td", { "data-testid": "partitions" }, qu.partitions),
          h("td", { "data-testid": "queue-state" }, qu.paused ? "⏸ paused" : "▶ active"),
          STATUSES.map((st) => h("td", { "data-count": st }, count(qu, st))),
          h("td", { "data-testid": "depth", title: depth.map(([p, n]) => `priority ${p}: ${n}`).join(", ") }, `${depth.reduce((n, [, d]) => n + d, 0)} (${depth.map(([, d]) => d).join(" / ")})`),
          h("td", { "data-count": "dead_letter" }, qu.dead_letter ?? count(qu, "dead_letter")),
          h("td", { "data-testid": "retention" }, retentionCell(qu, load)),
          h("td", {}, h("div", { class: "actions" }, !can("admin") ? null : qu.paused ? act(qu, "Resume", "primary") : act(qu, "Pause", ""))));
      })))));
  }
  await load();
  const groups = groupsView();
  main.append(groups.section);
  await groups.load();
  const reload = throttle(() => load().catch(() => {}), 50, 1000);
  onEvents(reload);
  every(3000, () => { load().catch(() => {}); groups.load().catch(() => {}); });
}

// A queue's groups (docs/groups-and-limits.md): GET /api/queues/{queue}/groups (the groups with the
// most waiting tasks, then those with limits of their own), and for an admin a form that PUTs one
// group's limits and a button per group that DELETEs them (a 422 names the field and is shown).
function groupsView() {
  const queueName = h("input", { name: "groups-queue", value: "default", size: 12, "aria-label": "Groups of queue" });
  const holder = h("div", { "data-testid": "groups" });
  const name = h("input", { name: "group", placeholder: "account-42", size: 14, "aria-label": "Group name" });
  const conc = h("input", { type: "number", min: "1", name: "concurrency", size: 6, "aria-label": "Group concurrency" });
  const limit = h("input", { type: "number", min: "1", name: "rate.limit", size: 6, "aria-label": "Group rate limit" });
  const per = h("input", { type: "number", min: "0", step: "any", name: "rate.per_s", size: 6, "aria-label": "Group rate per seconds" });
  const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
  const path = (g) => `/api/queues/${encodeURIComponent(queueName.value.trim() || "default")}/groups${g ? `/${encodeURIComponent(g)}` : ""}`;
  let drawn = null;
  const rate = (r) => (r ? `${r.limit} / ${r.per_s} s` : "—");
  async function load() {
    let data;
    try { data = await api("GET", path()); } catch (e) {
      holder.replaceChildren(e.status === 404 ? unavailable("Groups") : h("p", { class: "notice" }, e.message));
      drawn = null;
      return;
    }
    const key = JSON.stringify(data);
    if (key === drawn) return;
    drawn = key;
    const remove = (g) => h("button", { "data-action": "remove-limits", "aria-label": `Remove limits of group ${g.group}`, onclick: async () => {
      try { await api("DELETE", path(g.group)); toast(`Limits removed: ${g.group}`); } catch (err) { toast(`Not removed: ${err.message}`); }
      load().catch(() => {});
    } }, "Remove limits");
    const d = data.default || {};
    holder.replaceChildren(
      h("p", { class: "muted", "data-testid": "group-default" }, `Default for every group: concurrency ${d.concurrency ?? "—"}, rate ${rate(d.rate)}`),
      (data.groups || []).length === 0 ? h("p", { class: "muted" }, "No group has waiting tasks or limits of its own.") :
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["group", "pending", "running", "concurrency", "rate", "held back", "next start", "actions"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.groups.map((g) => h("tr", { "data-group": g.group, "data-held": String(Boolean(g.held_back)) },
            h("td", { class: "mono" }, g.group),
            h("td", { "data-count": "pending" }, g.pending),
            h("td", { "data-count": "running" }, g.running),
            h("td", { "data-testid": "group-concurrency" }, g.concurrency ?? "—"),
            h("td", { "data-testid": "group-rate" }, rate(g.rate)),
            h("td", { "data-testid": "group-held" }, g.held_back ? "held" : "—"),
            h("td", {}, g.next_start_at ? new Date(g.next_start_at).toLocaleTimeString() : "—"),
            h("td", {}, can("admin") ? remove(g) : null)))))));
  }
  const form = h("form", { class: "row", "data-testid": "group-limits-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = { concurrency: num(conc) };
    if (num(limit) !== null || num(per) !== null) body.rate = { limit: num(limit), per_s: num(per) };
    try {
      await api("PUT", path(name.value.trim()), body);
      toast(`Limits saved: ${name.value.trim()}`);
      load().catch(() => {});
    } catch (err) { toast(`Limits not saved: ${err.message}`); }
  } }, h("label", {}, "Group", name), h("label", {}, "Concurrency", conc), h("label", {}, "Rate: starts", limit), h("label", {}, "per (s)", per),
    h("button", { type: "submit", class: "primary", "aria-label": "Save group limits" }, "Save limits"));
  const section = h("section", {}, h("h2", {}, "Groups"),
    h("p", { class: "muted" }, "Fair per-group limits: tasks with a group wait in Redis, not in a worker, until their group's limits let them start."),
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); drawn = null; load().catch(() => {}); } }, h("label", {}, "Queue", queueName), h("button", { type: "submit" }, "Show")),
    can("admin") ? form : null, holder);
  return { section, load };
}

// A queue's retention (README: Retention): each kind's age and count, and for an admin a form that
// PUTs new bounds (an empty field removes that bound; a 422 names the field and is shown).
const RETAINED = ["completed", "failed", "cancelled", "dead_letter"];
function retentionCell(qu, reload) {
  const kept = qu.retention || {};
  const age = (s) => (s == null ? "TTL" : s % 86400 === 0 ? `${s / 86400}d` : s % 3600 === 0 ? `${s / 3600}h` : `${s}s`);
  const shown = h("ul", { class: "plain" }, RETAINED.map((k) => h("li", { "data-kind": k },
    `${k.replace("_", " ")}: ${age((kept[k] || {}).age_s)}, ${(kept[k] || {}).count ?? "∞"}`)));
  if (!can("admin")) return shown;
  const inputs = {};
  const rows = RETAINED.map((k) => {
    const b = kept[k] || {};
    inputs[k] = {
      age_s: h("input", { type: "number", min: "0", name: `${k}.age_s`, "aria-label": `${k} age (s)`, value: b.age_s ?? "", size: 8 }),
      count: h("input", { type: "number", min: "0", name: `${k}.count`, "aria-label": `${k} count`, value: b.count ?? "", size: 8 }),
    };
    return h("tr", {}, h("th", {}, k.replace("_", " ")), h("td", {}, inputs[k].age_s), h("td", {}, inputs[k].count));
  });
  const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
  const form = h("form", { "data-testid": "retention-form", onsubmit: async (e) => {
    e.preventDefault();
    const retention = {};
    for (const k of RETAINED) retention[k] = { age_s: num(inputs[k].age_s), count: num(inputs[k].count) };
    try {
      await api("PUT", `/api/queues/${encodeURIComponent(qu.name)}`, { retention });
      toast(`Retention saved: ${qu.name}`);
      e.target.closest("details").open = false;
      reload().catch(() => {});
    } catch (err) { toast(`Retention not saved: ${err.message}`); }
  } }, h("table", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "age (s)"), h("th", {}, "count")), rows),
    h("button", { type: "submit", class: "primary", "aria-label": `Save retention of queue ${qu.name}` }, "Save"));
  return h("div", {}, shown, h("details", {}, h("summary", {}, "Edit"), form));
}

// ---------- Task detail ---------------------------------------------------------------------------
// The page is three parts built once: the task (rebuilt on each of its lifecycle events), the
// reschedule form (shown while the task is scheduled; what the user typed is kept) and the webhook
// deliveries (polled while the task has a webhook; redrawn only when the log changed, so nothing
// flickers).
async function taskDetail(id) {
  main.append(h("h1", {}, "Task ", h("span", { class: "mono" }, id)));
  const body = h("div");
  const when = h("input", { type: "datetime-local", "aria-label": "New due time (local time)" });
  const reschedule = h("section", { hidden: true, "data-testid": "reschedule" }, h("h2", {}, "Reschedule"),
    h("form", { class: "row", onsubmit: async (e) => {
      e.preventDefault();
      if (!when.value) return toast("Pick a time first");
      try { await api("POST", `/api/tasks/${id}/reschedule`, { scheduled_for: new Date(when.value).toISOString() }); toast("Rescheduled"); }
      catch (err) { toast(err.status === 404 && !describe(err.body).includes(id) ? "Reschedule is not available on this server" : `Reschedule failed: ${err.message}`); }
      load().catch(() => {});
    } }, h("label", {}, "Reschedule to (a past time runs it now)", when), h("button", { type: "submit", "data-action": "reschedule" }, "Reschedule")));
  const hooks = deliveriesView(id);
  main.append(body, reschedule, hooks.section);
  let task = null;
  let asked = 0, drawn = 0; // loads can overlap: an older reply never replaces a newer one
  async function load() {
    const mine = ++asked;
    let t;
    try { t = await api("GET", `/api/tasks/${id}`); } catch (e) {
      if (mine < drawn) return;
      drawn = mine;
      body.replaceChildren(h("p", { class: "notice" }, e.status === 404 ? `No task ${id} (it may have been deleted or expired).` : e.message));
      reschedule.hidden = true; hooks.section.hidden = true;
      return;
    }
    if (mine < drawn) return;
    drawn = mine;
    task = t;
    body.replaceChildren(
      h("div", { class: "panel" },
        h("dl", { class: "kv" },
          h("dt", {}, "status"), h("dd", { "data-testid": "task-status" }, badge(t.status)),
          t.progress != null ? [h("dt", {}, "progress"), h("dd", { "data-testid": "task-progress" }, `${Math.round(t.progress * 100)}%${t.progress_message ? ` — ${t.progress_message}` : ""}`)] : null,
          h("dt", {}, "type"), h("dd", {}, t.type),
          h("dt", {}, "queue"), h("dd", { "data-testid": "task-queue" }, h("a", { href: `#/tasks?queue=${encodeURIComponent(t.queue || "")}` }, t.queue || "—")),
          h("dt", {}, "priority"), h("dd", {}, t.priority),
          h("dt", {}, "attempts"), h("dd", {}, `${t.attempts} (max retries ${t.max_retries})`),
          h("dt", {}, "created"), h("dd", {}, fmtTime(t.created_at)),
          h("dt", {}, "scheduled for"), h("dd", { "data-testid": "scheduled-for", "data-iso": t.scheduled_for || "" }, fmtTime(t.scheduled_for)),
          h("dt", {}, "started"), h("dd", {}, fmtTime(t.started_at)),
          h("dt", {}, "finished"), h("dd", {}, fmtTime(t.completed_at)),
          h("dt", {}, "worker"), h("dd", { class: "mono" }, t.worker || "—"),
          t.cancel_requested && t.status === "processing" ? [h("dt", {}, "cancel"), h("dd", { "data-testid": "cancel-requested" }, "requested: the worker is stopping it")] : null,
          h("dt", {}, "webhook"), h("dd", {}, t.webhook || "—"),
          t.error ? [h("dt", {}, "error"), h("dd", { class: "error-text", "data-testid": "task-error" }, t.error)] : null),
        h("div", { style: "margin-top:12px" }, actionButtons(t, load))),
      h("h2", {}, "Payload"), h("pre", { "data-testid": "payload" }, fmtJson(t.payload)),
      h("h2", {}, "Result"), h("pre", { "data-testid": "result" }, fmtJson(t.result)),
      h("h2", {}, "Error history"),
      t.history.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "error-history" }, h("thead", {}, h("tr", {}, h("th", {}, "attempt"), h("th", {}, "at"), h("th", {}, "error"))),
        h("tbody", {}, t.history.map((e) => h("tr", {}, h("td", {}, e.attempt), h("td", {}, fmtTime(e.at)), h("td", { class: "error-text" }, e.error)))))) : h("p", { class: "muted" }, "No failed attempts."));
    reschedule.hidden = t.status !== "scheduled" || !can("admin");
    hooks.section.hidden = false;
    await hooks.refresh(t);
  }
  const reload = throttle(() => load().catch(() => {}), 50, 400);
  // listening before the first load: an event that comes while it is on its way loads again
  onEvents((batch) => { if (batch.some((e) => e.task === id || e.event === "resync")) reload(); });
  await load();
  // delivery attempts are not lifecycle events: poll the log while the task has a webhook
  every(1500, () => { if (task && task.webhook) hooks.refresh(task).catch(() => {}); });
}
const DELIVERY_COLS = [
  ["attempt", (d) => d.attempt], ["started", (d) => fmtTime(d.started_at)], ["event", (d) => d.event],
  ["outcome", (d) => d.outcome], ["status code", (d) => d.status_code ?? "—"],
  ["duration", (d) => (d.duration_ms === null || d.duration_ms === undefined ? "—" : fmtSecs(d.duration_ms / 1000))],
  ["error", (d) => d.error || "—"], ["next attempt", (d) => fmtTime(d.next_attempt_at)],
];
function deliveriesView(id) {
  const status = h("p", { class: "muted", "data-testid": "webhook-status" });
  const box = h("div", { "data-testid": "deliveries" }, h("p", { class: "muted" }, "Loading deliveries…"));
  const redeliver = h("button", { "data-action": "redeliver", hidden: true, onclick: async (e) => {
    e.target.disabled = true;
    try { await api("POST", `/api/tasks/${id}/redeliver`); toast("Webhook queued for redelivery"); }
    catch (err) { toast(err.status === 404 && !describe(err.body).includes(id) ? "Redeliver is not available on this server" : `Redeliver failed: ${err.message}`); }
    finally { e.target.disabled = false; }
    if (view.task) view.refresh(view.task).catch(() => {});
  } }, "Redeliver webhook");
  const section = h("section", {}, h("h2", {}, "Webhook deliveries"), status, box, h("div", { style: "margin-top:8px" }, redeliver));
  let drawn = null; // the JSON last drawn: identical data is not drawn again
  const view = { section, task: null, async refresh(task) {
    view.task = task;
    let log;
    try { log = await api("GET", `/api/tasks/${id}/deliveries`); } catch (e) {
      const key = `error:${e.status}`;
      if (drawn !== key) box.replaceChildren(e.status === 404 && !describe(e.body).includes(id) || e.status === 405 ? unavailable("Webhook delivery history") : h("p", { class: "notice" }, e.message));
      drawn = key; redeliver.hidden = true;
      return;
    }
    const items = Array.isArray(log) ? log : log.deliveries || [];
    const webhook = log.webhook ?? task.webhook;
    status.replaceChildren(webhook ? h("span", {}, "webhook status: ", h("strong", { "data-status": log.webhook_status || "" }, log.webhook_status || "none yet")) : "This task has no webhook.");
    redeliver.hidden = !webhook || !can("admin");
    redeliver.setAttribute("aria-label", `Redeliver the webhook of task ${id}`);
    const key = JSON.stringify(items);
    if (key === drawn) return;
    drawn = key;
    box.replaceChildren(items.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "delivery-log" },
      h("thead", {}, h("tr", {}, DELIVERY_COLS.map(([c]) => h("th", {}, c)))),
      h("tbody", {}, items.map((d) => h("tr", { "data-outcome": d.outcome, "data-status-code": d.status_code ?? "" },
        DELIVERY_COLS.map(([c, f]) => h("td", { class: c === "error" && d.error ? "error-text" : null }, String(f(d))))))))) : h("p", { class: "muted" }, "No deliveries yet."));
  } };
  return view;
}

// ---------- Create --------------------------------------------------------------------------------
async function create() {
  main.append(h("h1", {}, "Create a task"));
  if (!can("submit")) { main.append(h("p", { class: "notice", "data-testid": "no-scope" }, `The key ${session.name} has no submit scope: it cannot create tasks.`)); return; }
  const types = new Set(["noop", "echo", "sleep", "fail"]);
  try { for (const w of await api("GET", "/api/workers")) for (const t of w.handlers) types.add(t); } catch { /* built-ins only */ }
  const list = h("datalist", { id: "known-types" }, [...types].sort().map((t) => h("option", { value: t })));
  const field = (label, input) => h("label", {}, label, input);
  const type = h("input", { name: "type", list: "known-types", required: true, value: "echo" });
  const payload = h("textarea", { name: "payload", "aria-describedby": "payload-help" }, '"hello"');
  const priority = h("select", { name: "priority" }, [1, 2, 3, 4, 5].map((p) => h("option", { value: p, selected: p === 3 }, `${p}${p === 5 ? " (highest)" : p === 1 ? " (lowest)" : ""}`)));
  const scheduled = h("input", { name: "scheduled_for", type: "datetime-local" });
  const retries = h("input", { name: "max_retries", type: "number", min: 0, max: 100, placeholder: "3" });
  const timeout = h("input", { name: "timeout_s", type: "number", min: 0, step: "any", placeholder: "server default" });
  const webhook = h("input", { name: "webhook", type: "url", placeholder: "https://example.com/hook" });
  const idem = h("input", { name: "idempotency_key", placeholder: "optional" });
  const queueName = h("input", { name: "queue", placeholder: "server default" });
  const basic = h("div", { id: "tab-basic", role: "tabpanel", "aria-labelledby": "tab-basic-btn" },
    h("div", { class: "grid-form" }, field("Type", type)),
    h("label", { style: "margin-top:12px" }, "Payload (JSON; plain text is sent as a string)", payload),
    h("p", { id: "payload-help", class: "muted" }, "Built-in types: noop, echo (returns the payload), sleep (payload: seconds), fail (payload: message)."));
  const advanced = h("div", { id: "tab-advanced", role: "tabpanel", "aria-labelledby": "tab-advanced-btn", hidden: true },
    h("div", { class: "grid-form" }, field("Queue", queueName), field("Priority", priority), field("Run at (local time; empty = now)", scheduled), field("Max retries", retries),
      field("Timeout (s)", timeout), field("Webhook URL", webhook), field("Idempotency key", idem)));
  const tabBtn = (id, label, panel, other) => h("button", { type: "button", role: "tab", id: `${id}-btn`, "aria-controls": id, "aria-selected": id === "tab-basic" ? "true" : "false",
    onclick: (e) => { panel.hidden = false; other().hidden = true; for (const b of e.target.parentNode.children) b.setAttribute("aria-selected", String(b === e.target)); } }, label);
  const tabs = h("div", { class: "tabs", role: "tablist" }, tabBtn("tab-basic", "Basic", basic, () => advanced), tabBtn("tab-advanced", "Advanced", advanced, () => basic));
  const errors = h("ul", { class: "errors", "data-testid": "create-errors" });
  const created = h("tbody");
  const form = h("form", { class: "panel", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    errors.replaceChildren();
    let body;
    try { body = { type: type.value.trim() }; const text = payload.value.trim(); if (text) { try { body.payload = JSON.parse(text); } catch { body.payload = text; } } }
    catch (err) { errors.append(h("li", {}, err.message)); return; }
    body.priority = Number(priority.value);
    if (scheduled.value) body.scheduled_for = new Date(scheduled.value).toISOString();
    if (retries.value !== "") body.max_retries = Number(retries.value);
    if (timeout.value !== "") body.timeout_s = Number(timeout.value);
    if (webhook.value.trim()) body.webhook = webhook.value.trim();
    if (idem.value.trim()) body.idempotency_key = idem.value.trim();
    if (queueName.value.trim()) body.queue = queueName.value.trim();
    try {
      const t = await api("POST", "/api/tasks", body);
      created.prepend(taskRow(t, () => refreshCreated(t.id), { showError: true }));
      refreshCreated(t.id); // its events that came before this row existed found nothing to update
      toast(`Created ${t.id}`);
    } catch (err) {
      const detail = err.body && Array.isArray(err.body.detail) ? err.body.detail : [{ loc: [], msg: err.message }];
      for (const d of detail) errors.append(h("li", {}, `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`));
    }
  } }, list, tabs, basic, advanced, errors, h("div", { style: "margin-top:12px" }, h("button", { type: "submit", class: "primary" }, "Create task")));
  main.append(form, h("h2", {}, "Created here"), taskTable([], { showError: true }));
  main.querySelector("[data-testid=task-table] tbody").replaceWith(created);
  const asked = new Map(); // task id -> number of its latest GET: an older reply never replaces a newer one
  async function refreshCreated(id) {
    if (!created.querySelector(`tr[data-task="${id}"]`)) return;
    const mine = (asked.get(id) || 0) + 1;
    asked.set(id, mine);
    let t;
    try { t = await api("GET", `/api/tasks/${id}`); } catch { return; /* deleted */ }
    const row = created.querySelector(`tr[data-task="${id}"]`);
    if (row && asked.get(id) === mine) row.replaceWith(taskRow(t, () => refreshCreated(id), { showError: true }));
  }
  onEvents((batch) => {
    for (const id of new Set(batch.map((e) => e.task))) refreshCreated(id);
    if (batch.some((e) => e.event === "resync")) for (const row of created.querySelectorAll("tr[data-task]")) refreshCreated(row.dataset.task);
  });
}

// ---------- Workers -------------------------------------------------------------------------------
async function workers() {
  main.append(h("h1", {}, "Workers and services"), h("p", { class: "muted" }, "Every live process of every service, from the service registry; refreshed every 2 s."));
  const holder = h("div");
  main.append(holder);
  const cols = ["kind", "host", "pid", "concurrency", "in flight", "processed", "uptime", "last heartbeat", "metrics", "id"];
  async function load() {
    const list = await api("GET", "/dash/services");
    const now = Date.now();
    holder.replaceChildren(list.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "services" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, list.map((s) => h("tr", { "data-kind": s.kind, "data-pid": s.pid },
        h("td", {}, s.kind), h("td", {}, s.host), h("td", {}, s.pid),
        h("td", {}, s.info.concurrency ?? "—"), h("td", {}, s.info.in_flight ?? s.in_progress ?? "—"), h("td", {}, s.info.processed ?? "—"),
        h("td", {}, fmtSecs(s.uptime_s)), h("td", {}, `${fmtSecs(Math.max(0, (now - new Date(s.last_heartbeat)) / 1000))} ago`),
        h("td", {}, s.metrics_up === null ? h("span", { class: "muted" }, "not scraped yet") : h("a", { href: s.metrics_url, title: s.metrics_error || "" }, h("span", { class: `badge ${s.metrics_up ? "up" : "down"}` }, s.metrics_up ? "✓ up" : "✗ down"))),
        h("td", { class: "mono" }, s.id)))))) : h("p", { class: "notice" }, "No live services registered."));
  }
  await load();
  every(2000, () => load().catch(() => {}));
}

// ---------- Schedules -----------------------------------------------------------------------------
async function schedules() {
  main.append(h("h1", {}, "Schedules"), h("p", { class: "muted" }, "Periodic schedules: the scheduler creates a task from the template at every cron tick (in the schedule's time zone)."));
  const holder = h("div");
  main.append(can("admin") ? scheduleForm(() => load()) : null, h("h2", {}, "Schedules"), holder);
  let drawn = null;
  async function load() {
    let data;
    try { data = await api("GET", "/api/schedules"); } catch (e) {
      holder.replaceChildren(e.status === 404 ? unavailable("Periodic schedules") : h("p", { class: "notice" }, e.message));
      drawn = null;
      return;
    }
    const items = Array.isArray(data) ? data : data.schedules || [];
    const key = JSON.stringify(items);
    if (key === drawn) return; // unchanged: keep the table (and the focus on its buttons)
    drawn = key;
    if (!items.length) { holder.replaceChildren(h("p", { class: "muted", "data-testid": "no-schedules" }, "No periodic schedules.")); return; }
    const act = (s, label, method, path, cls) => h("button", { class: cls, "data-action": label.toLowerCase(), "aria-label": `${label} schedule ${s.name}`, onclick: async (e) => {
      if (method === "DELETE" && !confirm(`Delete schedule ${s.name}? The tasks it created are kept.`)) return;
      e.target.disabled = true;
      try { await api(method, path); toast(`${label}: ${s.name}`); } catch (err) { toast(err.status === 404 && !describe(err.body).includes(s.name) ? `${label} is not available on this server` : `${label} failed: ${err.message}`); }
      load().catch(() => {});
    } }, label);
    holder.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "schedules" },
      h("thead", {}, h("tr", {}, ["name", "cron", "time zone", "task type", "next run", "last run", "fired", "queue", "state", "actions"].map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((s) => {
        const name = encodeURIComponent(s.name);
        const paused = Boolean(s.paused);
        return h("tr", { "data-schedule": s.name, "data-paused": String(paused) },
          h("td", {}, s.name), h("td", { class: "mono" }, s.cron || "—"), h("td", {}, s.timezone || "UTC"),
          h("td", {}, (s.task && s.task.type) || s.type || "—"), h("td", {}, fmtTime(s.next_run_at)),
          h("td", {}, s.last_task_id ? h("a", { href: `#/task/${s.last_task_id}` }, fmtTime(s.last_run_at)) : fmtTime(s.last_run_at)),
          h("td", {}, s.fired_total ?? "—"),
          h("td", { "data-testid": "schedule-queue" }, s.queue || (s.task && s.task.queue) || "—"),
          h("td", { "data-testid": "schedule-state" }, paused ? "⏸ paused" : "▶ active"),
          h("td", {}, h("div", { class: "actions" }, !can("admin") ? null : paused ? act(s, "Resume", "POST", `/api/schedules/${name}/resume`, "primary") : act(s, "Pause", "POST", `/api/schedules/${name}/pause`, ""),
            can("admin") ? act(s, "Delete", "DELETE", `/api/schedules/${name}`, "danger") : null)));
      })))));
  }
  await load();
  every(3000, () => load().catch(() => {}));
}
function scheduleForm(after) {
  const field = (label, input) => h("label", {}, label, input);
  const name = h("input", { name: "name", required: true, placeholder: "nightly-report", pattern: "[A-Za-z0-9_.:\\-]+" });
  const cron = h("input", { name: "cron", required: true, value: "*/5 * * * *", class: "mono" });
  const zone = h("input", { name: "timezone", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
  const type = h("input", { name: "type", required: true, value: "echo", list: "schedule-types" });
  const payload = h("input", { name: "payload", value: '"tick"', class: "mono" });
  const priority = h("select", { name: "priority" }, [1, 2, 3, 4, 5].map((p) => h("option", { value: p, selected: p === 3 }, p)));
  const queue = h("input", { name: "queue", placeholder: "server default" });
  const types = h("datalist", { id: "schedule-types" }, ["noop", "echo", "sleep", "fail"].map((t) => h("option", { value: t })));
  const errors = h("ul", { class: "errors", "data-testid": "schedule-errors" });
  return h("form", { class: "panel", novalidate: true, "aria-label": "New schedule", onsubmit: async (e) => {
    e.preventDefault();
    errors.replaceChildren();
    const task = { type: type.value.trim(), priority: Number(priority.value) };
    if (queue.value.trim()) task.queue = queue.value.trim();
    const text = payload.value.trim();
    if (text) { try { task.payload = JSON.parse(text); } catch { task.payload = text; } }
    try {
      const s = await api("POST", "/api/schedules", { name: name.value.trim(), cron: cron.value.trim(), timezone: zone.value.trim() || "UTC", task });
      toast(`Created schedule ${s.name}; next run ${fmtTime(s.next_run_at)}`);
      name.value = "";
      after();
    } catch (err) {
      if (err.status === 404) { toast("Periodic schedules are not available on this server"); return; }
      const detail = err.body && Array.isArray(err.body.detail) ? err.body.detail : [{ loc: [], msg: err.message }];
      for (const d of detail) errors.append(h("li", {}, `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`));
    }
  } }, h("h2", { style: "margin-top:0" }, "New schedule"), types,
  h("div", { class: "grid-form" }, field("Name", name), field("Cron (minute hour day month weekday)", cron), field("Time zone", zone),
    field("Task type", type), field("Task payload (JSON)", payload), field("Task priority", priority), field("Task queue", queue)),
  errors, h("div", { style: "margin-top:12px" }, h("button", { type: "submit", class: "primary" }, "Create schedule")));
}

// ---------- Dead letters --------------------------------------------------------------------------
async function dead() {
  main.append(h("h1", {}, "Dead letters"), h("p", { class: "muted" }, "Tasks that failed after their last retry. Retry sends one back to pending with fresh attempts."));
  const holder = h("div");
  const pager = h("div", { class: "pager" });
  main.append(h("div", { class: "row" }, bulkRetryButton(() => load().catch(() => {}))), holder, pager);
  const cursors = [null];
  let page = 0;
  async function load() {
    const p = new URLSearchParams({ status: "failed", limit: "50" });
    if (cursors[page]) p.set("cursor", cursors[page]);
    const data = await api("GET", `/api/tasks?${p}`);
    holder.replaceChildren(data.tasks.length ? taskTable(data.tasks.map((t) => taskRow(t, load))) : h("p", { class: "muted" }, "No dead letters."));
    cursors[page + 1] = data.next_cursor;
    pager.replaceChildren(...pagerControls(page, data.next_cursor, (step) => { page += step; load(); }));
  }
  const reload = throttle(() => load().catch(() => {}), 50, 500);
  onEvents((batch) => { if (batch.some((e) => e.status === "failed" || e.event === "resync" || e.event === "deleted" || e.event === "created")) reload(); });
  await load();
}

// ---------- session -------------------------------------------------------------------------------
function showSession() {
  if (!can("submit")) document.querySelector('nav a[data-route="create"]').hidden = true;
  if (!session.auth) return;
  const logout = h("button", { type: "button", "data-action": "logout", onclick: async () => {
    try { await api("POST", "/logout"); } catch { /* gone already */ }
    location.href = "/login";
  } }, "Log out");
  document.querySelector("header.top").append(h("span", { class: "who muted", "data-testid": "who" }, `${session.name} (${session.scopes.join(", ")})`), logout);
}
async function start() {
  const res = await fetch("/dash/session");
  if (res.status === 401) { location.href = "/login"; return; }
  if (res.ok) Object.assign(session, await res.json());
  showSession();
  if (can("read")) connect(); else live.hidden = true;  // the live feed needs the read scope
  route();
}
start();

// ---------- Workflows (docs/workflows.md) ---------------------------------------------------------
const WF_STATUSES = ["running", "completed", "failed", "cancelled"];
async function workflowsPage() {
  const status = new URLSearchParams(location.hash.split("?")[1] || "").get("status") || "";
  const picker = h("select", { "aria-label": "Status", "data-testid": "workflow-status-filter",
    onchange: (e) => { location.hash = e.target.value ? `#/workflows?status=${e.target.value}` : "#/workflows"; } },
  h("option", { value: "" }, "any"), WF_STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const holder = h("div");
  main.append(h("h1", {}, "Workflows"), h("p", { class: "muted" }, "DAGs of tasks: each step runs once its parents completed."),
    h("div", { class: "row" }, h("label", {}, "Status", picker)), holder);
  let drawn = null;
  async function load() {
    let data;
    try { data = await api("GET", `/api/workflows?limit=100${status ? `&status=${status}` : ""}`); } catch (e) {
      holder.replaceChildren(e.status === 404 ? unavailable("Workflows") : h("p", { class: "notice" }, e.message));
      return;
    }
    const key = JSON.stringify(data.workflows);
    if (key === drawn) return;
    drawn = key;
    if (!data.workflows.length) { holder.replaceChildren(h("p", { class: "muted", "data-testid": "no-workflows" }, "No workflows.")); return; }
    holder.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "workflows" },
      h("thead", {}, h("tr", {}, ["name", "status", "steps done", "queue", "created", "ended"].map((c) => h("th", {}, c)))),
      h("tbody", {}, data.workflows.map((w) => h("tr", { "data-workflow": w.id, "data-status": w.status },
        h("td", {}, h("a", { href: `#/workflow/${w.id}` }, w.name)), h("td", {}, badge(w.status)),
        h("td", {}, `${w.steps_total - w.steps_open} / ${w.steps_total}`), h("td", {}, w.queue),
        h("td", {}, fmtTime(w.created_at)), h("td", {}, fmtTime(w.completed_at))))))));
  }
  await load();
  onEvents(throttle(() => load().catch(() => {}), 100, 1000));
  every(3000, () => load().catch(() => {}));
}

// Layered layout: a step's column is the longest path to it from a step without parents.
function dagLayout(steps) {
  const depth = {};
  const visit = (name, seen) => {
    if (depth[name] !== undefined) return depth[name];
    if (seen.has(name)) return 0; // a cycle cannot be stored (422), but never loop
    seen.add(name);
    const after = (steps[name] && steps[name].after) || [];
    depth[name] = after.length ? 1 + Math.max(...after.map((p) => visit(p, seen))) : 0;
    return depth[name];
  };
  const columns = [];
  for (const name of Object.keys(steps)) (columns[visit(name, new Set())] ||= []).push(name);
  const at = {};
  columns.forEach((names, x) => names.forEach((name, y) => { at[name] = { x, y }; }));
  return { at, columns };
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
function drawDag(steps) {
  const { at, columns } = dagLayout(steps);
  const W = 150, H = 30, GX = 60, GY = 12;
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const root = svg("svg", { width: columns.length * (W + GX), height: rows * (H + GY) + GY, role: "img",
    "aria-label": "Workflow steps and their dependencies", "data-testid": "dag", class: "dag" });
  const pos = (name) => ({ x: at[name].x * (W + GX) + 4, y: at[name].y * (H + GY) + GY });
  for (const [name, step] of Object.entries(steps)) {
    for (const parent of step.after || []) {
      if (!at[parent]) continue;
      const a = pos(parent), b = pos(name);
      root.append(svg("line", { x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2, class: "edge" }));
    }
  }
  for (const [name, step] of Object.entries(steps)) {
    const p = pos(name);
    const node = svg("g", { "data-testid": "dag-node", "data-step": name, "data-status": step.status, class: `node ${step.status}` },
      svg("title", {}, `${name}: ${step.status}`),
      svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      svg("text", { x: p.x + 8, y: p.y + H / 2 + 5 }, `${MARK[step.status] || ""} ${name}`.slice(0, 20)));
    root.append(node);
  }
  return root;
}

async function workflowDetail(id) {
  const head = h("div");
  const graph = h("div", { class: "dag-wrap" });
  const table = h("div");
  main.append(h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")), head, graph, table);
  let drawn = null;
  async function load() {
    const w = await api("GET", `/api/workflows/${encodeURIComponent(id)}`);
    const key = JSON.stringify(w);
    if (key === drawn) return;
    drawn = key;
    const act = (label, path) => h("button", { class: label === "Cancel" ? "danger" : "primary", "data-action": label.toLowerCase(),
      onclick: async (e) => {
        if (label === "Cancel" && !confirm(`Cancel workflow ${w.name}?`)) return;
        e.target.disabled = true;
        try { await api("POST", path); toast(`${label}: ${w.name}`); } catch (err) { toast(`${label} failed: ${err.message}`); }
        load().catch(() => {});
      } }, `${label} workflow`);
    const path = `/api/workflows/${encodeURIComponent(id)}`;
    head.replaceChildren(h("h1", {}, `Workflow ${w.name} `, h("span", { "data-testid": "workflow-status" }, badge(w.status))),
      h("p", { class: "muted mono" }, w.id),
      h("div", { class: "actions" }, can("admin") && w.status === "running" ? act("Cancel", `${path}/cancel`) : null,
        can("admin") && (w.status === "failed" || w.status === "cancelled") ? act("Retry", `${path}/retry`) : null));
    graph.replaceChildren(drawDag(w.steps));
    const rows = Object.values(w.steps).concat(w.on_failure ? [w.on_failure] : []);
    table.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-testid": "workflow-steps" },
      h("thead", {}, h("tr", {}, ["step", "status", "after", "attempts", "started", "ended", "error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((s) => h("tr", { "data-step": s.name },
        h("td", {}, h("a", { href: `#/task/${s.task_id}` }, s.name)), h("td", {}, badge(s.status)),
        h("td", {}, (s.after || []).join(", ") || "—"), h("td", {}, s.attempts), h("td", {}, fmtTime(s.started_at)),
        h("td", {}, fmtTime(s.completed_at)), h("td", { class: "error-text" }, s.error || "")))))));
  }
  await load();
  onEvents(throttle(() => load().catch(() => {}), 100, 500));
  every(2000, () => load().catch(() => {}));
}
