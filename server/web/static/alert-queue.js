// The queue of alerts waiting to be shown: ordered, bounded, and honest about what it dropped.
//
// order "value": the alert worth the most coins goes next (expensive gifts jump the queue), ties in
// room order; order "fifo": room order. At capacity (a flood no one could watch anyway), a new
// alert first merges into a queued one from the same sender for the same gift ("Rose x 12"); if
// there is none, the least valuable alert is dropped and counted, so the queue never grows
// without bound and big gifts are never the ones that vanish.

const MAX_EIDS_PER_ALERT = 64;

export class AlertQueue {
  constructor({ order = "value", max = 50 } = {}) {
    this.order = order === "fifo" ? "fifo" : "value";
    this.max = Math.max(1, max);
    this.items = [];
    this.merged = 0;
    this.dropped = 0;
  }

  get length() {
    return this.items.length;
  }

  before(a, b) {
    if (this.order === "value" && a.coins !== b.coins) return a.coins > b.coins;
    return a.seq < b.seq;
  }

  insert(alert) {
    let i = this.items.length;
    while (i > 0 && this.before(alert, this.items[i - 1])) i--;
    this.items.splice(i, 0, alert);
  }

  /** Returns "queued", "merged" or "dropped". */
  push(alert) {
    if (this.items.length < this.max) {
      this.insert(alert);
      return "queued";
    }
    if (!alert.combo) {
      const idx = this.items.findIndex(
        (q) => !q.combo && q.sender === alert.sender && q.gift === alert.gift,
      );
      if (idx >= 0) {
        const [q] = this.items.splice(idx, 1);
        q.count += alert.count;
        q.coins += alert.coins;
        q.events += alert.events;
        // Event ids are kept for the test hook and debugging, but a flood must not grow them.
        if (q.eids.length < MAX_EIDS_PER_ALERT) q.eids.push(...alert.eids);
        this.insert(q);
        this.merged++;
        return "merged";
      }
    }
    // Least valuable among the queue and the newcomer; on a tie the newest goes.
    let low = -1;
    for (let i = 0; i < this.items.length; i++) {
      const q = this.items[i];
      if (low < 0 || q.coins < this.items[low].coins ||
          (q.coins === this.items[low].coins && q.seq > this.items[low].seq)) low = i;
    }
    const lowest = this.items[low];
    if (alert.coins < lowest.coins || (alert.coins === lowest.coins && alert.seq > lowest.seq)) {
      this.dropped++;
      return "dropped";
    }
    this.items.splice(low, 1);
    this.dropped++;
    this.insert(alert);
    return "queued";
  }

  shift() {
    return this.items.shift();
  }
}
