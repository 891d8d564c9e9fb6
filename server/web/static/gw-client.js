// giftwire browser client: one room over the JSON subprotocol, with reconnect and resume.
//
// The server side of this contract is docs/protocol.md. What this module guarantees to its user:
// every room event (`gift`, `combo`) is delivered at most once (event ids), in room order, and
// after a reconnect everything the room history still holds is replayed (`join` with `after`).
// No build step: a plain ES module, shared by the overlay and the demo page.

export const SUBPROTOCOL = "giftwire.v1.json";
export const PROTOCOL_VERSION = 1;

// Close codes after which reconnecting with the same token cannot help.
const FATAL_CLOSES = new Map([
  [4001, "unauthorized"],
  [4003, "forbidden"],
  [4004, "token_expired"],
]);
const TOO_SLOW = 4008;
// The overlay key was rotated: not fatal, an overlay keeps retrying (with backoff) and says so.
const OVERLAY_KEY_INVALID = 4005;
// Error codes that end the attempt to join: the page needs a different token or room.
const FATAL_ERRORS = new Set(["unauthorized", "token_expired", "token_revoked", "forbidden"]);

/** The claims of a JWT, without verifying it (the server does that); null if unreadable. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** A server frame is one message or an array of messages. */
export function parseFrame(text) {
  const value = JSON.parse(text);
  return Array.isArray(value) ? value : [value];
}

/** The last `capacity` event ids: enough to catch replay overlap, bounded for long streams. */
export class EidWindow {
  constructor(capacity = 4096) {
    this.capacity = capacity;
    this.set = new Set();
    this.ring = new Array(capacity);
    this.next = 0;
  }

  has(eid) {
    return this.set.has(eid);
  }

  add(eid) {
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = eid;
    this.next = (this.next + 1) % this.capacity;
    this.set.add(eid);
  }

  get size() {
    return this.set.size;
  }
}

/**
 * One WebSocket session that (re)joins one room.
 *
 * Callbacks: onEvent(msg) for new room events, onSnapshot(joined) for each `joined`,
 * onMessage(msg) for everything else (goal, leaderboard, viewers, room, ack, balance, error),
 * onStatus(state, detail) for connection state changes.
 */
export class RoomClient {
  constructor({
    url,
    token,
    room,
    client = "giftwire-web",
    backoffMs = 250,
    maxBackoffMs = 8000,
    eidWindow = 4096,
    onEvent = () => {},
    onSnapshot = () => {},
    onMessage = () => {},
    onStatus = () => {},
  }) {
    Object.assign(this, { url, token, room, client, backoffMs, maxBackoffMs });
    Object.assign(this, { onEvent, onSnapshot, onMessage, onStatus });
    this.seen = new EidWindow(eidWindow);
    this.state = "idle";
    this.epoch = ""; // the room's epoch: lastSeq and floorSeq count within it
    this.lastSeq = 0; // highest seq of a room event received (the resume point)
    this.floorSeq = 0; // events at or below this are covered by the last snapshot
    this.heartbeatS = 20;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    this.requests = new Map(); // request id -> {resolve, reject}; bounded by the caller's sends
    this.nextId = 1;
    this.stats = { connects: 0, joins: 0, received: 0, duplicates: 0, stale: 0, gaps: 0,
      lastDelay: null };
    this.held = false; // test hook: stay disconnected until release()
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopHeartbeat();
    if (this.ws) this.ws.close(1000, "bye");
    this.setState("stopped");
  }

  /** Send a client message; resolves with the server's reply to it (ack, joined, error...). */
  request(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== "joined") {
      return Promise.reject(new Error("not connected"));
    }
    const id = "r" + this.nextId++;
    return new Promise((resolve, reject) => {
      this.requests.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  /** Send without waiting for a reply (combo_end, ping). */
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  setState(state, detail) {
    this.state = state;
    this.onStatus(state, detail);
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped || this.held) return;
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.stats.connects++;
      this.lastFrameAt = Date.now();
      this.setState("hello");
      ws.send(JSON.stringify({ type: "hello", v: PROTOCOL_VERSION, client: this.client,
        token: this.token }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let msgs;
      try {
        msgs = parseFrame(ev.data);
      } catch {
        return; // a frame we cannot read is skipped, like an unknown message type
      }
      for (const msg of msgs) this.dispatch(msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.stopHeartbeat();
      this.failRequests();
      if (this.stopped) return;
      const fatal = FATAL_CLOSES.get(ev.code);
      if (fatal) {
        this.setState("failed", fatal);
        return;
      }
      if (ev.code === OVERLAY_KEY_INVALID) {
        this.scheduleReconnect("overlay_key_invalid");
        return;
      }
      // Too slow: the server dropped us to protect others; resuming right away is the contract.
      const delay = ev.code === TOO_SLOW ? 0 : undefined;
      this.scheduleReconnect(`closed ${ev.code}`, delay);
    };
    ws.onerror = () => {}; // onclose follows and decides
  }

  scheduleReconnect(reason, delayMs) {
    clearTimeout(this.timer);
    if (this.stopped) return;
    let delay = delayMs;
    if (delay === undefined) {
      const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this.attempt);
      delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter spreads a herd of overlays
      this.attempt++;
    }
    this.stats.lastDelay = Math.round(delay);
    this.setState("reconnecting", reason);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  dispatch(msg) {
    switch (msg.type) {
      case "welcome":
        this.heartbeatS = msg.heartbeat_s || 20;
        this.startHeartbeat();
        this.join();
        return;
      case "joined":
        this.onJoined(msg);
        return;
      case "gift":
      case "combo":
        this.onRoomEvent(msg);
        return;
      case "gap":
        this.onGap(msg);
        return;
      case "going_away":
        // The server is draining: leave now and come back after its hint (to another server).
        this.onMessage(msg);
        this.dropSocket();
        this.scheduleReconnect("going_away", (msg.reconnect_ms || 1000) * (0.5 + Math.random()));
        return;
      case "error":
        this.onError(msg);
        return;
      default:
        this.settle(msg);
        this.onMessage(msg);
    }
  }

  join() {
    const msg = { type: "join", room: this.room, id: "join" };
    if (this.epoch) Object.assign(msg, { after: this.lastSeq, epoch: this.epoch });
    this.setState("joining");
    this.ws.send(JSON.stringify(msg));
  }

  onJoined(msg) {
    if (msg.room !== this.room) return;
    this.attempt = 0;
    this.stats.joins++;
    if (msg.resume === "ok") {
      this.floorSeq = this.lastSeq; // replay of everything after it follows
    } else {
      if (msg.resume === "gap") this.stats.gaps++;
      // Fresh snapshot: what happened up to its seq is in the snapshot, not an alert to show.
      // A gap can also mean the room's history restarted (a new epoch, whose seq may be lower
      // than ours), so the snapshot's position replaces ours rather than being merged with it.
      // Event ids stay unique across epochs: the ones seen still catch replays.
      this.floorSeq = msg.seq;
      this.lastSeq = msg.seq;
    }
    this.epoch = msg.epoch;
    this.setState("joined", msg.resume);
    this.onSnapshot(msg);
  }

  /** The room's history restarted while joined: events since our position may be lost. */
  onGap(msg) {
    if (msg.room !== this.room) return;
    this.stats.gaps++;
    this.epoch = msg.epoch;
    this.floorSeq = msg.seq;
    this.lastSeq = msg.seq;
    this.onMessage(msg);
  }

  onRoomEvent(msg) {
    if (msg.room !== this.room) return;
    if (msg.epoch !== this.epoch) {
      // The server tells `gap` before another epoch's events; this is a backstop: a seq of
      // another epoch says nothing about ours.
      this.onGap({ room: msg.room, epoch: msg.epoch, seq: msg.seq - 1 });
    }
    if (this.seen.has(msg.eid)) {
      this.stats.duplicates++;
      return;
    }
    if (msg.seq <= this.floorSeq) {
      this.stats.stale++;
      this.seen.add(msg.eid);
      return;
    }
    this.seen.add(msg.eid);
    this.stats.received++;
    if (msg.seq > this.lastSeq) this.lastSeq = msg.seq;
    this.onEvent(msg);
  }

  onError(msg) {
    if (msg.id === "join") {
      if (FATAL_ERRORS.has(msg.code)) {
        this.stopped = true;
        this.setState("failed", msg.code);
        this.dropSocket();
        return;
      }
      // room_not_found and friends: the room may appear (go live) later; try again gently.
      this.dropSocket();
      this.scheduleReconnect(msg.code);
    }
    this.settle(msg);
    this.onMessage(msg);
  }

  settle(msg) {
    if (!msg.id) return;
    const pending = this.requests.get(msg.id);
    if (!pending) return;
    this.requests.delete(msg.id);
    pending.resolve(msg);
  }

  failRequests() {
    for (const pending of this.requests.values()) pending.reject(new Error("connection lost"));
    this.requests.clear();
  }

  dropSocket() {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    this.failRequests();
    if (ws) ws.close(1000, "reconnecting");
  }

  startHeartbeat() {
    this.stopHeartbeat();
    const every = Math.max(1000, this.heartbeatS * 500);
    this.pingTimer = setInterval(() => {
      // Silence for two heartbeats (pongs included) means a half-open socket: start over.
      if (Date.now() - this.lastFrameAt > this.heartbeatS * 2000) {
        this.dropSocket();
        this.scheduleReconnect("silent");
        return;
      }
      this.send({ type: "ping", t: Date.now() });
    }, every);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** Test hook: drop the connection and stay away until release(). */
  hold() {
    this.held = true;
    this.dropSocket();
    clearTimeout(this.timer);
    this.setState("held");
  }

  release() {
    this.held = false;
    if (!this.stopped) this.connect();
  }
}

/** ws(s)://<this host>/ws */
export function defaultSocketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}
