// The battle bar: a gift battle's two scores as one bar, a countdown, and the result
// (docs/battles.md). Fed the `battle` messages of the overlay's room; the overlay's own room is
// always the left side. Scores never go down during a battle, so a late update is ignored.

const RESULT_MS = 30000; // how long the result stays on screen after the end
// Past the end with no `end` message (missed in a pub/sub reconnect, or nobody settled it yet):
// ask the server, whose answer is also a touch that settles a due battle (docs/battles.md).
const ASK_AFTER_MS = 3000;
const ASK_EVERY_MS = 5000;

export class BattleBar {
  // askServer(room): resolves to the room's battle as `GET /api/rooms/{room}/battle` answers it
  // (or null); absent in test mode.
  constructor(root, askServer = null) {
    this.root = root;
    this.askServer = askServer;
    this.current = null; // the last battle message shown
    this.timer = null;
    this.hideTimer = null;
    this.askedAt = 0;
    this.onAsked = null; // called with the new state when an answer ended the battle
  }

  // A `battle` message; returns the state the overlay's hook exposes.
  update(msg) {
    const prev = this.current;
    if (prev && prev.battle === msg.battle && prev.phase === "end") return this.state();
    const mineFirst = (a, b) => (a.room === msg.room ? -1 : b.room === msg.room ? 1 : 0);
    const sides = [...msg.sides].sort(mineFirst);
    if (prev && prev.battle === msg.battle && msg.phase !== "end") {
      for (const s of sides) {
        const old = prev.sides.find((p) => p.room === s.room);
        if (old && old.score > s.score) s.score = old.score;
      }
    }
    this.current = { ...msg, sides };
    this.render();
    return this.state();
  }

  state() {
    const c = this.current;
    if (!c) return null;
    return {
      battle: c.battle,
      phase: c.phase,
      sides: c.sides.map((s) => ({ room: s.room, score: s.score, top: s.top ? s.top.name : null })),
      result: c.result || null,
      winner: c.winner || null,
    };
  }

  render() {
    const c = this.current;
    const [mine, theirs] = c.sides;
    const total = mine.score + theirs.score;
    const share = total ? (mine.score / total) * 100 : 50;
    const q = (sel) => this.root.querySelector(sel);
    this.root.hidden = false;
    this.root.dataset.phase = c.phase;
    q(".gw-battle-left .gw-battle-name").textContent = mine.creator || mine.room;
    q(".gw-battle-right .gw-battle-name").textContent = theirs.creator || theirs.room;
    q(".gw-battle-left .gw-battle-score").textContent = mine.score.toLocaleString("en-US");
    q(".gw-battle-right .gw-battle-score").textContent = theirs.score.toLocaleString("en-US");
    q(".gw-battle-fill").style.width = `${share}%`;
    const result = q(".gw-battle-result");
    if (c.phase === "end") {
      clearInterval(this.timer);
      this.timer = null;
      q(".gw-battle-clock").textContent = "";
      const winner = c.sides.find((s) => s.room === c.winner);
      result.textContent = c.result === "win" ? `${winner.creator || winner.room} wins!`
        : c.result === "draw" ? "Draw" : "Battle cancelled";
      result.dataset.result = c.result || "";
      const tops = c.sides.filter((s) => s.top).map((s) => `${s.top.name} (${s.room})`);
      q(".gw-battle-tops").textContent = tops.length ? `Top gifters: ${tops.join(" · ")}` : "";
      clearTimeout(this.hideTimer);
      this.hideTimer = setTimeout(() => { this.root.hidden = true; }, RESULT_MS);
    } else {
      result.textContent = "";
      q(".gw-battle-tops").textContent = "";
      clearTimeout(this.hideTimer);
      if (!this.timer) this.timer = setInterval(() => this.tick(), 1000);
      this.tick();
    }
  }

  tick() {
    const c = this.current;
    const now = Date.now();
    const left = Math.max(0, Math.ceil((c.ends_at - now) / 1000));
    const clock = this.root.querySelector(".gw-battle-clock");
    clock.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    if (this.askServer && now > c.ends_at + ASK_AFTER_MS && now - this.askedAt > ASK_EVERY_MS) {
      this.askedAt = now;
      this.ask(c);
    }
  }

  async ask(c) {
    let b = null;
    try {
      b = await this.askServer(c.room);
    } catch {
      return; // offline: the next tick asks again
    }
    if (!b || b.id !== c.battle || (b.state !== "ended" && b.state !== "cancelled")) return;
    this.update({ type: "battle", room: c.room, battle: b.id, phase: "end",
      starts_at: b.starts_at, ends_at: b.ends_at, sides: b.sides, result: b.result,
      winner: b.winner || undefined });
    if (this.onAsked) this.onAsked(this.state());
  }
}
