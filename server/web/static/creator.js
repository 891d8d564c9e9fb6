// The creator dashboard: sign in with a creator token (or a dev token in development mode), then
// the stream, the goal, the overlay URL and settings (with a live preview), earnings, redemption
// and the room's moderation lists, all through the HTTP API (docs/creator.md). Text from the
// server goes in through textContent only (user ids and titles are other people's input).
// `window.giftwireCreator` is a small hook for browser tests.

import { plural } from "./gifts.js";
import { tokenClaims } from "./gw-client.js";

const $ = (id) => document.getElementById(id);
const STORE = "giftwire.creator.token";
const hook = { room: "", live: null, overlayUrl: "", settings: null, errors: [], busy: 0 };
window.giftwireCreator = hook;
let token = sessionStorage.getItem(STORE) || "";

function status(text, kind = "info") {
  $("gw-status").textContent = text;
  $("gw-status").dataset.kind = kind;
}

/** One API call; refusals (problem+json) throw an Error with the problem's code and detail. */
async function api(path, { method = "GET", body } = {}) {
  hook.busy++;
  try {
    const headers = { accept: "application/json", authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, { method, headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error(`${data.code || res.status}: ${data.detail || res.statusText}`);
      err.code = data.code;
      throw err;
    }
    return data;
  } finally {
    hook.busy--;
  }
}

/** Run an action, reporting its outcome in the status line (never an uncaught rejection). */
async function act(what, fn) {
  try {
    const done = await fn();
    status(done || `${what}: done`);
  } catch (err) {
    hook.errors.push(err.code || String(err));
    status(`${what}: ${err.message}`, "error");
  }
}

const room = () => encodeURIComponent(hook.room);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const cells of rows) {
    const tr = body.insertRow();
    for (const [value, numeric] of cells) {
      const td = tr.insertCell();
      td.textContent = value;
      if (numeric) td.className = "num";
    }
  }
}

// -- sign-in -------------------------------------------------------------------------------

function signIn(newToken) {
  const claims = tokenClaims(newToken);
  if (!claims || !["creator", "admin"].includes(claims.role)) {
    status("that is not a creator token", "error");
    return;
  }
  token = newToken;
  sessionStorage.setItem(STORE, token);
  document.body.dataset.signedIn = "true";
  $("gw-sign-in").hidden = true;
  $("gw-main").hidden = false;
  $("gw-sign-out").hidden = false;
  $("gw-who").textContent = `signed in as ${claims.name || claims.sub} (${claims.role})`;
  $("gw-room").value = $("gw-room").value || claims.sub;
  hook.room = $("gw-room").value;
  loadAll();
}

$("gw-token-go").addEventListener("click", () => signIn($("gw-token").value.trim()));
$("gw-dev-go").addEventListener("click", () => act("dev sign-in", async () => {
  const res = await fetch("/creator/api/dev-token", { method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: $("gw-dev-user").value.trim() }) });
  const data = await res.json();
  if (!res.ok) throw Object.assign(new Error(`${data.code}: ${data.detail}`), { code: data.code });
  signIn(data.token);
  return "signed in (development)";
}));
$("gw-sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(STORE);
  location.reload();
});
$("gw-room").addEventListener("change", () => {
  hook.room = $("gw-room").value.trim();
  loadAll();
});

// -- stream and goal -----------------------------------------------------------------------

function showRoom(info) {
  hook.live = info ? info.live : null;
  const state = $("gw-live-state");
  state.dataset.live = info ? String(info.live) : "none";
  state.textContent = !info ? "not created yet: go live once"
    : info.live ? `LIVE since ${new Date(info.started_at).toLocaleTimeString()}` : "offline";
  if (info && info.title && !$("gw-title").value) $("gw-title").value = info.title;
  const goal = info && info.goal;
  $("gw-goal-state").textContent = goal
    ? `${goal.title}: ${goal.progress.toLocaleString("en-US")} / ${plural(goal.target, "coin")}`
    : "no goal";
  $("gw-goal-state").dataset.target = goal ? String(goal.target) : "0";
}

async function loadRoom() {
  try {
    showRoom(await api(`/api/rooms/${room()}`));
    return true;
  } catch (err) {
    if (err.code !== "room_not_found") throw err;
    showRoom(null);
    return false;
  }
}

// Every gift moves the goal's progress: re-read the room while signed in and looking, quietly
// (a failed read leaves the last state and the status line alone; the next one may succeed).
const ROOM_POLL_MS = 5000;
setInterval(() => {
  if (token && hook.room && !document.hidden) loadRoom().catch(() => {});
}, ROOM_POLL_MS);

$("gw-go-live").addEventListener("click", () => act("go live", async () => {
  await api(`/api/rooms/${room()}/live`, { method: "POST",
    body: { title: $("gw-title").value } });
  await loadAll();
  return "you are live";
}));
$("gw-end").addEventListener("click", () => act("end stream", async () => {
  await api(`/api/rooms/${room()}/end`, { method: "POST" });
  await loadRoom();
  await loadEarnings();
  return "stream ended";
}));
$("gw-goal-set").addEventListener("click", () => act("set goal", async () => {
  const target = Number($("gw-goal-target").value);
  await api(`/api/rooms/${room()}/goal`, { method: "POST",
    body: { title: $("gw-goal-title").value, target } });
  await loadRoom();
  return target ? "goal set" : "goal cleared";
}));

// -- overlay: URL, key rotation, settings with a live preview ------------------------------

function showOverlay(data) {
  hook.overlayUrl = data.url;
  $("gw-overlay-url").value = data.url;
}

$("gw-copy").addEventListener("click", () => act("copy", async () => {
  $("gw-overlay-url").select();
  await navigator.clipboard.writeText($("gw-overlay-url").value);
  return "overlay URL copied";
}));
$("gw-rotate").addEventListener("click", () => act("rotate key", async () => {
  if (!confirm("Rotate the overlay key? Every overlay on the current URL stops until you paste "
    + "the new URL into OBS.")) return "rotation cancelled: the overlay URL is unchanged";
  showOverlay(await api(`/api/rooms/${room()}/overlay-key/rotate`, { method: "POST" }));
  $("gw-overlay-state").textContent = "new key: overlays on the old URL have stopped";
  return "overlay key rotated";
}));

const form = $("gw-settings");
const FLAGS = ["alerts", "combos", "top", "goal", "ticker", "sound"];

function formSettings() {
  const out = {};
  for (const name of FLAGS) out[name] = form.elements[name].checked;
  for (const name of ["min_coins", "alert_ms", "volume"]) out[name] = Number(form.elements[name].value);
  return out;
}

function fillForm(s) {
  for (const name of FLAGS) form.elements[name].checked = s[name];
  for (const name of ["min_coins", "alert_ms", "volume"]) form.elements[name].value = s[name];
}

/** The preview is the overlay page in test mode: it takes the form's settings as if pushed. */
function preview() {
  const overlay = $("gw-preview").contentWindow?.giftwireOverlay;
  if (overlay && overlay.inject) overlay.inject({ type: "overlay_settings", room: hook.room,
    ...formSettings() });
}

form.addEventListener("input", preview);
$("gw-preview").addEventListener("load", preview);
form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("save settings", async () => {
    hook.settings = await api(`/api/rooms/${room()}/overlay-settings`, { method: "POST",
      body: formSettings() });
    fillForm(hook.settings);
    $("gw-settings-state").textContent = "saved: open overlays apply them now";
    return "settings saved";
  });
});

async function loadOverlay() {
  showOverlay(await api(`/api/rooms/${room()}/overlay-key`));
  hook.settings = await api(`/api/rooms/${room()}/overlay-settings`);
  fillForm(hook.settings);
  preview();
}

// -- earnings and redemption ---------------------------------------------------------------

async function loadEarnings() {
  const me = await api("/api/me/earnings");
  $("gw-diamonds").textContent = me.diamonds.toLocaleString("en-US");
  $("gw-redeem-state").textContent = `minimum ${plural(me.redeem_min_diamonds, "diamond")}`;
  const streams = await api("/api/me/streams");
  fillTable("gw-streams", streams.items.map((s) => [
    [`${s.room} · ${when(s.started_at)}`], [s.ended_at ? when(s.ended_at) : "live"],
    [String(s.gifts), true], [s.diamonds.toLocaleString("en-US"), true]]));
  const tx = await api("/api/me/transactions?kind=redeem&limit=20");
  fillTable("gw-redemptions", tx.items.map((t) => [
    [when(t.ts)], [Math.abs(t.diamonds).toLocaleString("en-US"), true], [t.ref]]));
}

$("gw-earnings-refresh").addEventListener("click", () => act("refresh", loadEarnings));
$("gw-redeem").addEventListener("click", () => act("redeem", async () => {
  const diamonds = Number($("gw-redeem-amount").value);
  const res = await api("/api/me/redeem", { method: "POST",
    body: { diamonds, request_id: crypto.randomUUID() } });
  await loadEarnings();
  return `payout requested: ${plural(diamonds, "diamond")} (${plural(res.diamonds, "diamond")} left)`;
}));

// -- moderation (the room's lists; changes go through the moderation API) -------------------

async function loadModeration() {
  const [blocks, mods, audit] = await Promise.all([
    api(`/api/rooms/${room()}/blocks`), api(`/api/rooms/${room()}/moderators`),
    api(`/api/rooms/${room()}/audit?limit=20`)]);
  $("gw-blocks").replaceChildren(...blocks.blocks.map((b) => {
    const li = document.createElement("li");
    li.textContent = `${b.user}${b.reason ? ` (${b.reason})` : ""} `;
    const un = document.createElement("button");
    un.type = "button";
    un.textContent = "Unblock";
    un.addEventListener("click", () => act("unblock", async () => {
      await api(`/api/rooms/${room()}/blocks/${encodeURIComponent(b.user)}`,
        { method: "DELETE" });
      await loadModeration();
      return `${b.user} unblocked`;
    }));
    li.append(un);
    return li;
  }));
  $("gw-moderators").replaceChildren(...mods.moderators.map((m) => {
    const li = document.createElement("li");
    li.textContent = m.user;
    return li;
  }));
  fillTable("gw-audit", audit.items.map((e) => [[when(e.at)], [e.actor], [e.action],
    [e.target]]));
}

$("gw-moderation-refresh").addEventListener("click", () => act("refresh", loadModeration));

// -- start ---------------------------------------------------------------------------------

async function loadAll() {
  await act("load", async () => {
    const exists = await loadRoom();
    await loadEarnings();
    if (exists) await Promise.all([loadOverlay(), loadModeration()]);
    hook.loaded = (hook.loaded || 0) + 1;
    document.body.dataset.loaded = String(hook.loaded);
    return exists ? "ready" : "go live once to create your room";
  });
}

if (token) signIn(token);
