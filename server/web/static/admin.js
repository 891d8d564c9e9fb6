// The operator view: polls /api/admin/status every second with the page's admin token and
// redraws. Text only through textContent (room and user names are other people's input).
const token = new URLSearchParams(location.search).get("token") || "";
const headers = { authorization: `Bearer ${token}` };
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

function cell(row, value, numeric = false) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "-" : String(value);
  if (numeric) td.className = "num";
  return td;
}

function fill(tableId, items, draw) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const item of items) draw(body.insertRow(), item);
}

function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "-";
}

function showReconcile(r) {
  if (!r) return;
  let text = `${r.status}: started ${time(r.started_at)} by ${r.by} on ${r.process}`;
  if (r.finished_at) text += `, finished ${time(r.finished_at)}`;
  if (r.differences !== null && r.differences !== undefined) text += `, ${r.differences} difference(s)`;
  if (r.error) text += ` (${r.error})`;
  $("gw-reconcile-status").textContent = text;
  $("gw-reconcile-status").dataset.status = r.status;
  const list = $("gw-reconcile-differences");
  list.replaceChildren();
  for (const d of r.shown || []) {
    const li = document.createElement("li");
    li.textContent = d;
    list.append(li);
  }
}

function draw(s) {
  const t = s.totals;
  $("gw-total-connections").textContent = t.connections;
  $("gw-total-events").textContent = t.events_per_s;
  $("gw-total-deliveries").textContent = t.deliveries_per_s;
  $("gw-total-slow").textContent = t.slow_disconnects;
  $("gw-total-ratelimited").textContent = t.rate_limited;
  $("gw-total-errors").textContent = t.errors;
  $("gw-ledger-lag").textContent = s.ledger_lag;
  fill("gw-rooms", s.rooms, (row, r) => {
    row.dataset.room = r.room;
    cell(row, r.room); cell(row, r.creator);
    cell(row, r.viewers, true); cell(row, r.events_per_s, true);
  });
  fill("gw-processes", s.processes, (row, p) => {
    cell(row, p.process); cell(row, p.worker ?? "alone");
    for (const k of ["connections", "rooms", "events_per_s", "deliveries_per_s",
                     "slow_disconnects", "rate_limited", "errors"]) cell(row, p[k], true);
    cell(row, p.draining ? "draining" : "serving");
  });
  fill("gw-ledger", s.ledger, (row, l) => {
    row.dataset.shard = l.shard;
    if (l.entries > 0) row.className = "lagging";
    cell(row, l.shard, true); cell(row, l.entries, true); cell(row, l.oldest_s, true);
  });
  showReconcile(s.reconcile);
  $("gw-updated").textContent = `updated ${time(s.at)}`;
}

async function poll() {
  try {
    const r = await fetch("/api/admin/status", { headers });
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || `HTTP ${r.status}`);
    $("gw-error").hidden = true;
    draw(body);
  } catch (err) {
    $("gw-error").textContent = String(err.message || err);
    $("gw-error").hidden = false;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$("gw-reconcile-run").addEventListener("click", async () => {
  const r = await fetch("/api/admin/reconcile", { method: "POST", headers });
  const body = await r.json();
  if (r.ok) showReconcile(body.reconcile);
  else $("gw-error").textContent = body.detail || `HTTP ${r.status}`;
});

poll();
