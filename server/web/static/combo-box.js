// The overlay's combo counters: one row per combo in progress, counting up with its `combo`
// progress events, replaced by its settled total for a moment when the combo's `gift` event
// comes (the full alert follows in the queue). Bounded: at most MAX_ROWS rows, and a combo whose
// settled event never came (missed in a gap) leaves after STALE_MS.

import { artFor, giftName } from "./gifts.js";

const MAX_ROWS = 5;
const STALE_MS = 15000;
const SETTLED_MS = 1200; // the settled total stays this long where the counter was

// Combo ids are scoped to their sender (docs/protocol.md section 3).
const comboKey = (msg) => `${msg.sender}\u0000${msg.combo}`;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class ComboBox {
  constructor(root) {
    this.root = root;
    this.combos = new Map(); // comboKey -> {row, count, touched, settled}
    setInterval(() => {
      const now = Date.now();
      for (const [key, entry] of this.combos) if (now - entry.touched > STALE_MS) this.drop(key);
    }, 2000);
  }

  get size() {
    return this.combos.size;
  }

  /** A `combo` progress event. */
  progress(msg) {
    const key = comboKey(msg);
    let entry = this.combos.get(key);
    if (!entry) {
      if (this.combos.size >= MAX_ROWS) this.drop(this.combos.keys().next().value);
      entry = { row: this.row(msg), count: 0, touched: 0, settled: false };
      entry.row.dataset.combo = msg.combo;
      this.combos.set(key, entry);
    }
    entry.touched = Date.now();
    // Progress can only grow; a replayed older count must not move the counter back.
    if (!entry.settled && msg.count > entry.count) this.setCount(entry, msg.gift, msg.count);
  }

  /** The settled `gift` event of a combo. */
  settled(msg) {
    const key = comboKey(msg);
    const entry = this.combos.get(key);
    if (!entry) return;
    entry.settled = true;
    entry.touched = Date.now();
    this.setCount(entry, msg.gift, msg.count);
    entry.row.classList.add("gw-settled");
    setTimeout(() => this.drop(key), SETTLED_MS);
  }

  row(msg) {
    const row = el("div", "gw-combo");
    const icon = el("div", "gw-combo-icon");
    icon.innerHTML = artFor(msg.gift); // our own static SVG
    row.append(icon, el("span", "gw-combo-name", msg.name), el("span", "gw-combo-count"));
    this.root.append(row);
    return row;
  }

  setCount(entry, gift, count) {
    entry.count = count;
    entry.row.querySelector(".gw-combo-count").textContent = `${giftName(gift)} x ${count}`;
    entry.row.dataset.count = String(count);
    entry.row.animate?.(
      [{ transform: "scale(1.18)" }, { transform: "scale(1)" }],
      { duration: 180, easing: "ease-out" },
    );
  }

  drop(key) {
    const entry = this.combos.get(key);
    if (!entry) return;
    entry.row.remove();
    this.combos.delete(key);
  }
}
