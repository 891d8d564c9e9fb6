// The creator overlay: gift alerts one at a time, combo counters, the goal bar, top gifters and
// the battle bar.
//
// Query options (docs/overlay.md): key (the dashboard's overlay key) or token, room,
// widgets=alerts,goal,top,combo,ticker,battle, duration (ms), gap (ms), order=value|fifo, max
// (queue bound), test=1 (local fake gifts, no server), auto=0 (test mode without the generator),
// bg (CSS background), status=1 (show connection). The creator's saved settings
// (`overlay_settings`, pushed by the server) set widgets, duration, the minimum for a full alert
// and sound; a `widgets` or `duration` written into the URL wins over them.
// `window.giftwireOverlay` is a small read-mostly hook for browser tests and debugging.

import { AlertQueue } from "./alert-queue.js";
import { BattleBar } from "./battle-bar.js";
import { ComboBox } from "./combo-box.js";
import { alertFromGift, renderAlert } from "./alert-render.js";
import { artFor, giftName, loadCatalog, plural } from "./gifts.js";
import { defaultSocketUrl, RoomClient, tokenClaims } from "./gw-client.js";
import { startFakeGifts } from "./overlay-test-mode.js";
import { GiftSounds } from "./sounds.js";

const WIDGETS = ["alerts", "goal", "top", "combo", "ticker", "battle"];
const TICKER_ROWS = 6; // the recent-gifts ticker: every gift lands here, newest first
const SHOWN_HISTORY = 1000; // the hook's record of shown alerts; older entries fall off
const TIER_DURATION = [1, 1, 1, 1, 1.5, 2]; // bigger gifts stay on screen longer

function readOptions(search) {
  const q = new URLSearchParams(search);
  const num = (name, dflt, lo, hi) => {
    const v = Number(q.get(name));
    return q.has(name) && Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  const widgets = new Set(
    (q.get("widgets") || WIDGETS.join(",")).split(",").map((w) => w.trim()).filter(Boolean),
  );
  return {
    key: q.get("key") || "",
    token: q.get("key") || q.get("token") || "",
    room: q.get("room") || "",
    widgets,
    duration: num("duration", 5000, 1, 60000),
    gap: num("gap", 600, 0, 60000),
    order: q.get("order") === "fifo" ? "fifo" : "value",
    max: num("max", 50, 1, 1000),
    test: q.get("test") === "1",
    auto: q.get("auto") !== "0",
    bg: q.get("bg") || "",
    status: q.get("status") === "1",
    backoff: num("backoff", 250, 10, 60000),
    // Options written into this overlay's URL win over the creator's saved settings.
    given: new Set(q.keys()),
  };
}

const opts = readOptions(location.search);
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};

const stage = $("gw-stage");
const comboBox = $("gw-combos");
const goalBox = $("gw-goal");
const topBox = $("gw-top");
const statusBox = $("gw-status");
const tickerBox = $("gw-ticker");
const BOXES = { alerts: stage, goal: goalBox, top: topBox, combo: comboBox, ticker: tickerBox };
const battleBox = $("gw-battle");
const battleBar = new BattleBar(battleBox, opts.test ? null : async (room) => {
  // opts.token is the overlay key when the URL has one: the API takes either.
  const r = await fetch(`/api/rooms/${encodeURIComponent(room)}/battle`,
    { headers: { authorization: `Bearer ${opts.token}`, accept: "application/json" } });
  return r.ok ? r.json() : null;
});

function showWidgets() {
  for (const name of WIDGETS) {
    if (name === "battle") continue; // shown only while there is a battle (battle-bar.js)
    BOXES[name].hidden = !opts.widgets.has(name);
  }
}
showWidgets();
// The creator's saved settings (server-side, pushed live); until they arrive, the query string.
const settings = { minCoins: 0, sound: false, volume: 60 };
const sounds = new GiftSounds();
if (opts.bg) document.body.style.background = opts.bg;

const queue = new AlertQueue({ order: opts.order, max: opts.max });
const combos = new ComboBox(comboBox);
let client = null;

const hook = {
  options: { ...opts, widgets: [...opts.widgets], token: opts.token ? "(set)" : "",
    key: opts.key ? "(set)" : "", given: [...opts.given] },
  state: "idle",
  detail: "",
  shown: [], // {eids, seq, gift, count, coins, sender, name, combo, tier}, oldest first
  shownTotal: 0,
  comboUpdates: 0,
  current: null,
  goal: null,
  battle: null, // {battle, phase, sides: [{room, score, top}], result, winner}: this room first
  top: [],
  errors: [],
  paused: false,
  get lastSeq() {
    return client ? client.lastSeq : 0;
  },
  get epoch() {
    return client ? client.epoch : "";
  },
  get stats() {
    return client ? { ...client.stats } : { connects: 0, received: 0, duplicates: 0 };
  },
  get queued() {
    return queue.length;
  },
  get dropped() {
    return queue.dropped;
  },
  get merged() {
    return queue.merged;
  },
  maxQueued: 0, // 1: every alert found the queue empty, so waited at most for the one on screen
  get activeCombos() {
    return combos.size;
  },
  get seenSize() {
    return client ? client.seen.size : 0;
  },
  pause() {
    this.paused = true;
  },
  resume() {
    this.paused = false;
    player.kick();
  },
  // Simulate a network blip: drop the socket and stay away until release().
  hold() {
    client?.hold();
  },
  release() {
    client?.release();
  },
  inject: null, // test mode only: feed a room event or state message as if from the server
  settings: null, // the last overlay_settings applied
  settingsApplied: 0,
  ticker: [], // {eid, gift, count, coins, name}, newest first (what the ticker shows)
  tickerTotal: 0,
  get sounds() {
    return sounds.played;
  },
};
window.giftwireOverlay = hook;
battleBar.onAsked = (state) => { hook.battle = state; };

// -- alerts --------------------------------------------------------------------------------

const player = {
  current: null,
  node: null,
  gapTimer: null,
  kick() {
    if (this.current || this.gapTimer || hook.paused) return;
    const alert = queue.shift();
    if (!alert) return;
    const dur = Math.round(opts.duration * TIER_DURATION[alert.tier]);
    if (settings.sound) sounds.play(alert.tier, settings.volume);
    // Anything still leaving goes now: at most one alert is ever in the DOM.
    stage.replaceChildren();
    this.node = renderAlert(alert, dur);
    stage.append(this.node);
    this.current = alert;
    hook.current = alert;
    hook.shownTotal++;
    hook.shown.push(alert);
    if (hook.shown.length > SHOWN_HISTORY) hook.shown.splice(0, hook.shown.length - SHOWN_HISTORY);
    setTimeout(() => this.finish(), dur);
  },
  finish() {
    const node = this.node;
    this.current = null;
    hook.current = null;
    if (node) {
      node.classList.add("gw-leaving");
      // The exit animation plays during the gap; with no gap there is nothing to wait for.
      setTimeout(() => node.remove(), Math.min(400, opts.gap));
    }
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      this.kick();
    }, opts.gap);
  },
};

// -- goal and top --------------------------------------------------------------------------

function renderGoal(goal) {
  hook.goal = goal ? { title: goal.title, target: goal.target, progress: goal.progress } : null;
  goalBox.classList.toggle("gw-empty", !goal);
  if (!goal) return;
  const pct = Math.min(100, (goal.progress / Math.max(1, goal.target)) * 100);
  $("gw-goal-title").textContent = goal.title;
  $("gw-goal-fill").style.width = `${pct}%`;
  $("gw-goal-numbers").textContent =
    `${goal.progress.toLocaleString("en-US")} / ${goal.target.toLocaleString("en-US")}`;
  goalBox.classList.toggle("gw-done", goal.progress >= goal.target);
  goalBox.dataset.progress = String(goal.progress);
  goalBox.dataset.target = String(goal.target);
}

function renderTop(top) {
  const three = (top || []).slice(0, 3);
  hook.top = three.map((t) => ({ user: t.user, name: t.name, coins: t.coins }));
  const list = $("gw-top-list");
  list.replaceChildren(
    ...three.map((t, i) => {
      const li = el("li", `gw-rank-${i + 1}`);
      li.dataset.user = t.user;
      li.append(el("span", "gw-top-name", t.name), el("span", "gw-top-coins",
        t.coins.toLocaleString("en-US")));
      return li;
    }),
  );
  topBox.classList.toggle("gw-empty", three.length === 0);
}

// -- recent gifts ticker: every gift is seen here, even when alerts merge or drop it ---------

function onTicker(msg) {
  const item = { eid: msg.eid, gift: msg.gift, count: msg.count, coins: msg.coins,
    name: msg.name };
  hook.ticker.unshift(item);
  hook.ticker.length = Math.min(hook.ticker.length, TICKER_ROWS);
  hook.tickerTotal++;
  const li = el("li", "gw-tick");
  li.dataset.eid = msg.eid;
  const icon = el("span", "gw-tick-icon");
  icon.innerHTML = artFor(msg.gift); // our own static SVG
  li.append(icon, el("span", "gw-tick-name", msg.name),
    el("span", "gw-tick-gift", `${giftName(msg.gift)} x ${msg.count}`),
    el("span", "gw-tick-coins", plural(msg.coins, "coin")));
  const list = $("gw-ticker-list");
  list.prepend(li);
  while (list.children.length > TICKER_ROWS) list.lastChild.remove();
}

// -- the creator's settings ----------------------------------------------------------------

function applySettings(msg) {
  const widgets = { alerts: msg.alerts, combo: msg.combos, top: msg.top, goal: msg.goal,
    ticker: msg.ticker };
  if (!opts.given.has("widgets")) {
    for (const [name, on] of Object.entries(widgets)) {
      if (on) opts.widgets.add(name);
      else opts.widgets.delete(name);
    }
    showWidgets();
  }
  if (!opts.given.has("duration")) opts.duration = msg.alert_ms;
  Object.assign(settings, { minCoins: msg.min_coins, sound: msg.sound, volume: msg.volume });
  hook.settings = { ...msg };
  hook.settingsApplied++;
  document.body.dataset.settings = String(hook.settingsApplied);
}

// -- wiring --------------------------------------------------------------------------------

function onRoomEvent(msg) {
  if (msg.type === "combo") {
    if (opts.widgets.has("combo")) {
      hook.comboUpdates++;
      combos.progress(msg);
    }
    return;
  }
  if (msg.type !== "gift") return;
  if (msg.combo) combos.settled(msg);
  onTicker(msg);
  // Below the creator's minimum a gift is only in the ticker.
  if (!opts.widgets.has("alerts") || msg.coins < settings.minCoins) return;
  queue.push(alertFromGift(msg));
  hook.maxQueued = Math.max(hook.maxQueued, queue.length);
  player.kick();
}

function onSnapshot(joined) {
  renderGoal(joined.goal || null);
  renderTop(joined.top || []);
  document.body.dataset.live = String(Boolean(joined.live));
}

function onMessage(msg) {
  switch (msg.type) {
    case "goal":
      renderGoal(msg);
      break;
    case "leaderboard":
      renderTop(msg.top);
      break;
    case "room":
      document.body.dataset.live = String(Boolean(msg.live));
      break;
    case "overlay_settings":
      applySettings(msg);
      break;
    case "battle":
      if (opts.widgets.has("battle")) hook.battle = battleBar.update(msg);
      break;
    case "error":
      hook.errors.push(msg.code);
      if (hook.errors.length > 20) hook.errors.shift();
      break;
    default:
  }
}

let keyInvalid = false;

function onStatus(state, detail) {
  hook.state = state;
  hook.detail = detail || "";
  document.body.dataset.state = state;
  const text = {
    connecting: "connecting…",
    hello: "connecting…",
    joining: "joining…",
    reconnecting: "reconnecting…",
    held: "offline",
    failed: `cannot connect: ${detail || "error"}`,
  }[state];
  // A rotated key: say so on the page until a join works again (the client keeps retrying).
  if (detail === "overlay_key_invalid") keyInvalid = true;
  else if (state === "joined") keyInvalid = false;
  document.body.dataset.keyInvalid = String(keyInvalid);
  statusBox.textContent = keyInvalid
    ? "This overlay key is no longer valid: copy the new overlay URL from the creator dashboard. Retrying…"
    : text || "";
  statusBox.hidden = !keyInvalid && (!text || !(opts.status || state === "failed"));
}

function start() {
  if (opts.test) {
    onStatus("test");
    const feed = (msg) => {
      if (msg.type === "gift" || msg.type === "combo") onRoomEvent(msg);
      else if (msg.type === "joined") onSnapshot(msg);
      else onMessage(msg);
    };
    hook.inject = feed;
    if (opts.auto) startFakeGifts(feed, opts);
    return;
  }
  // An overlay key names its room (ok1.<secret>.<room>); a token carries it as a claim.
  const keyRoom = opts.key.startsWith("ok1.") ? opts.key.split(".").slice(2).join(".") : "";
  const claims = opts.token && !opts.key ? tokenClaims(opts.token) : null;
  const room = opts.room || keyRoom || claims?.room;
  if (!opts.token || !room) {
    onStatus("failed", opts.token ? "token names no room" : "missing ?key= or ?token=");
    return;
  }
  client = new RoomClient({
    url: defaultSocketUrl(),
    token: opts.token,
    room,
    client: "giftwire-overlay",
    backoffMs: opts.backoff,
    onEvent: onRoomEvent,
    onSnapshot,
    onMessage,
    onStatus,
  });
  client.start();
}

loadCatalog();
start();
