// The viewer demo (`/demo`, demo mode only): you are a guest viewer of your own (never a bot);
// buy coins through the sandbox payment provider, send gifts into the demo room over the
// WebSocket protocol, hold a streakable gift to send a combo, and see each of your gifts
// confirmed once the room has it. `window.giftwireDemo` exposes what the browser tests check.

import { artFor, giftName, loadCatalog } from "./gifts.js";
import { defaultSocketUrl, RoomClient } from "./gw-client.js";

const FEED_SIZE = 12;
const MINE_SIZE = 8;
const STREAK_EVERY_MS = 150;
const GUEST_KEY = "giftwire-demo-guest";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};

const hook = {
  ready: false, balance: null, version: -1, acks: 0, errors: [], feed: 0, user: null,
  mine: [], // your gifts, newest first: {gift, count, combo, state: sending|charged|confirmed|failed}
};
window.giftwireDemo = hook;

let session = null;
let token = null;
let client = null;

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain-http LAN addresses are not secure contexts, and randomUUID needs one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
  if (isError) {
    hook.errors.push(text);
    if (hook.errors.length > 20) hook.errors.shift();
  }
}

function setBalance(coins) {
  hook.balance = coins;
  $("balance").textContent = coins.toLocaleString("en-US");
}

// A `balance` push: any change to the wallet, from any device or process (docs/protocol.md).
// Versions order them; a sync is a fresh read and may repeat the last version.
function onBalance(msg) {
  const stale = msg.reason === "sync" ? msg.version < hook.version : msg.version <= hook.version;
  if (stale) return;
  hook.version = msg.version;
  setBalance(msg.balance);
}

// -- your gifts: sending, charged (ack), confirmed (the room's event came back) -----------------

const mine = []; // entries, newest first

const MINE_TEXT = {
  sending: "sending…",
  charged: "charged, on its way to the room…",
  confirmed: "✓ confirmed: in the room and on the overlay",
  failed: "not sent",
};

function renderMine(entry) {
  entry.li.dataset.state = entry.state;
  entry.li.replaceChildren(el("b", "", `${giftName(entry.gift)} x ${entry.count}`),
    ` ${entry.combo && entry.state !== "confirmed" ? "streaking… " : ""}${MINE_TEXT[entry.state]}`);
  hook.mine = mine.map(({ gift, count, combo, state }) => ({ gift, count, combo, state }));
}

// A combo's count grows with its charged clicks; a plain send's is known at once (its room
// event may come before its ack).
function trackMine(gift, combo, count) {
  const existing = combo && mine.find((e) => e.combo === combo);
  if (existing) return existing;
  const entry = { gift, combo, count: combo ? 0 : count, state: "sending", li: el("li") };
  mine.unshift(entry);
  $("mine").prepend(entry.li);
  while (mine.length > MINE_SIZE) mine.pop().li.remove();
  renderMine(entry);
  return entry;
}

function settleMine(entry, state, count) {
  if (entry.state === "confirmed") return;
  entry.state = state;
  if (count !== undefined) entry.count = count;
  renderMine(entry);
}

// The room's event for one of your gifts: a combo by its id, a plain send the oldest match.
function confirmMine(msg) {
  const entry = msg.combo
    ? mine.find((e) => e.combo === msg.combo)
    : mine.findLast((e) => !e.combo && e.gift === msg.gift && e.count === msg.count &&
        e.state !== "confirmed" && e.state !== "failed");
  if (entry) settleMine(entry, "confirmed", msg.count);
}

async function api(path, { method = "GET", body, auth = true } = {}) {
  const headers = { accept: "application/json" };
  if (auth) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.code || `HTTP ${res.status}`);
  return data;
}

// -- the room feed ---------------------------------------------------------------------------

const comboItems = new Map(); // sender/combo -> <li>, only while the combo runs

function addFeed(node) {
  const feed = $("feed");
  feed.prepend(node);
  while (feed.childElementCount > FEED_SIZE) feed.lastElementChild.remove();
  hook.feed++;
}

function feedItem(msg, text) {
  const li = el("li");
  const icon = el("span", "feed-icon");
  icon.innerHTML = artFor(msg.gift); // our own static SVG
  li.append(icon, el("b", "", msg.name), ` ${text}`);
  return li;
}

function onEvent(msg) {
  const key = `${msg.sender}\u0000${msg.combo}`;
  if (msg.type === "combo") {
    const existing = comboItems.get(key);
    const li = feedItem(msg, `is streaking ${giftName(msg.gift)} x ${msg.count}…`);
    li.classList.add("streaking");
    if (existing?.isConnected) existing.replaceWith(li);
    else addFeed(li);
    comboItems.set(key, li);
    return;
  }
  if (msg.sender === hook.user) confirmMine(msg);
  const li = feedItem(msg, `sent ${giftName(msg.gift)} x ${msg.count} (${msg.coins} coins)`);
  const running = msg.combo && comboItems.get(key);
  if (running?.isConnected) running.replaceWith(li);
  else addFeed(li);
  if (msg.combo) comboItems.delete(key);
}

function onMessage(msg) {
  if (msg.type === "balance") onBalance(msg);
  else if (msg.type === "error" && msg.code) status(`refused: ${msg.code}`, true);
}

// -- actions ---------------------------------------------------------------------------------

let joinedWaiters = [];

function whenJoined() {
  return hook.ready ? Promise.resolve() : new Promise((resolve) => joinedWaiters.push(resolve));
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One gift, one tx: after a lost connection or `unavailable` the same tx is sent again (the
// server spends a tx at most once), so a retry can never charge twice.
async function sendGift(gift, combo) {
  const msg = { type: "gift", room: session.room, gift, count: 1, tx: newId() };
  if (combo) msg.combo = combo;
  const sender = client; // a new session (re-login) must not send this gift as someone else
  const entry = trackMine(gift, combo, msg.count);
  const ok = await deliver(sender, msg);
  if (entry.state === "confirmed") return ok;
  if (ok) {
    if (combo) entry.count += 1;
    settleMine(entry, "charged");
  } else if (!combo || entry.count === 0) {
    settleMine(entry, "failed");
  }
  return ok;
}

async function deliver(sender, msg) {
  for (let attempt = 0; attempt < 4; attempt++) {
    let reply;
    try {
      await whenJoined();
      if (client !== sender) return false;
      reply = await sender.request(msg);
    } catch {
      continue; // the connection dropped with the request in flight: same tx again
    }
    if (reply.type === "ack") {
      hook.acks++;
      setBalance(reply.balance);
      return true;
    }
    if (reply.code === "unavailable" || reply.code === "rate_limited") {
      await pause(reply.retry_ms || 500);
      continue;
    }
    status(`refused: ${reply.code}${reply.code === "insufficient_funds" ? " (buy coins)" : ""}`,
      true);
    return false;
  }
  status("not sent: the server is unavailable", true);
  return false;
}

function holdToStreak(button, gift) {
  let combo = null;
  let timer = null;
  const stop = () => {
    if (!combo) return;
    clearInterval(timer);
    client.send({ type: "combo_end", room: session.room, combo });
    combo = null;
    button.classList.remove("holding");
  };
  button.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    if (combo) return;
    combo = `c-${newId()}`;
    const mine = combo;
    button.classList.add("holding");
    sendGift(gift.id, mine);
    timer = setInterval(async () => {
      if (combo !== mine) return;
      if (!(await sendGift(gift.id, mine))) stop();
    }, STREAK_EVERY_MS);
  });
  for (const type of ["pointerup", "pointerleave", "pointercancel"]) {
    button.addEventListener(type, stop);
  }
}

async function buy(pkg) {
  try {
    const { receipt } = await api("/api/sandbox/receipts", { method: "POST",
      body: { package: pkg.id } });
    const res = await api("/api/purchases", { method: "POST",
      body: { package: pkg.id, receipt } });
    setBalance(res.balance);
    status(`bought ${pkg.coins.toLocaleString("en-US")} coins`);
  } catch (err) {
    status(`purchase failed: ${err.message}`, true);
  }
}

// -- setup -----------------------------------------------------------------------------------

function renderCatalog(catalog) {
  $("packages").replaceChildren(...catalog.packages.map((pkg) => {
    const b = el("button", "package");
    b.dataset.package = pkg.id;
    b.append(el("strong", "", `${pkg.coins.toLocaleString("en-US")} coins`),
      el("span", "", `$${(pkg.price_cents / 100).toFixed(2)}`));
    b.addEventListener("click", () => buy(pkg));
    return b;
  }));
  $("gifts").replaceChildren(...catalog.gifts.map((gift) => {
    const b = el("button", `gift tier-${gift.tier}`);
    b.dataset.gift = gift.id;
    const icon = el("span", "gift-icon");
    icon.innerHTML = artFor(gift.id);
    b.append(icon, el("span", "gift-name", gift.name),
      el("span", "gift-price", `${gift.coins.toLocaleString("en-US")} coins`));
    if (gift.streakable) {
      b.append(el("span", "streak-badge", "streak"));
      holdToStreak(b, gift);
    } else {
      b.addEventListener("click", () => sendGift(gift.id, null));
    }
    return b;
  }));
}

function storedGuest() {
  try {
    return localStorage.getItem(GUEST_KEY);
  } catch {
    return null; // storage disabled: a new guest each visit
  }
}

async function login() {
  hook.ready = false;
  client?.stop();
  const known = storedGuest();
  const viewer = await api("/demo/api/guest", { method: "POST",
    body: known ? { guest: known } : {}, auth: false });
  try {
    localStorage.setItem(GUEST_KEY, viewer.user);
  } catch {
    // not kept: a reload is a new guest
  }
  token = viewer.token;
  hook.user = viewer.user;
  $("you").textContent = viewer.name;
  $("you").dataset.user = viewer.user;
  const wallet = await api("/api/me/balance");
  setBalance(wallet.coins);
  client = new RoomClient({
    url: defaultSocketUrl(),
    token,
    room: session.room,
    client: "giftwire-demo",
    onEvent,
    onMessage,
    onStatus: (state, detail) => {
      document.body.dataset.state = state;
      hook.ready = state === "joined";
      if (hook.ready) {
        for (const resolve of joinedWaiters) resolve();
        joinedWaiters = [];
      }
      if (state === "joined") status(`${viewer.name} is in room ${session.room}`);
      else if (state === "failed") status(`cannot connect: ${detail}`, true);
      else status(`${state}…`);
    },
  });
  client.start();
}

async function main() {
  session = await api("/demo/api/session", { auth: false });
  $("room-name").textContent = session.room;
  $("overlay-link").href = session.overlay_url;
  await loadCatalog();
  renderCatalog(await api("/api/catalog", { auth: false }));
  await login();
}

main().catch((err) => status(`demo failed to start: ${err.message}`, true));
