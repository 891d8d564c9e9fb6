// Test mode (`?test=1`): fake gifts generated in the page, so a creator can place and size the
// overlay in OBS without a live stream. Events have the server's shapes and go through the same
// handlers as real ones.

const SENDERS = ["Mira", "Jonas", "Aiko", "Ravi", "Lena", "Tomás", "Zoe", "Kwame"];
// [gift id, unit price, weight, streakable]
const MIX = [
  ["rose", 1, 36, true],
  ["finger_heart", 5, 18, true],
  ["doughnut", 30, 12, true],
  ["hand_hearts", 100, 9, true],
  ["corgi", 299, 8, false],
  ["money_gun", 500, 6, false],
  ["sports_car", 7000, 5, false],
  ["lion", 29999, 3, false],
  ["universe", 44999, 3, false],
];
const TOTAL_WEIGHT = MIX.reduce((sum, m) => sum + m[2], 0);

function pick() {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const m of MIX) {
    r -= m[2];
    if (r < 0) return m;
  }
  return MIX[0];
}

export function startFakeGifts(feed, opts) {
  const room = "test-room";
  const spent = new Map();
  const goal = { title: "New camera", target: 50000, progress: 0 };
  let seq = 0;
  const event = (fields) => ({ room, seq: ++seq, epoch: "test", eid: `test-${seq}`, ts: Date.now(),
    ...fields });

  const credit = (user, coins) => {
    spent.set(user, (spent.get(user) || 0) + coins);
    goal.progress += coins;
    const top = [...spent.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([name, c]) => ({ user: name.toLowerCase(), name, coins: c }));
    feed({ type: "leaderboard", room, top });
    feed({ type: "goal", room, ...goal });
  };

  feed({ type: "joined", room, creator: "test", live: true, viewers: 0, top: [], goal, seq: 0,
    epoch: "test", resume: "none" });

  const combo = (name, gift, unit) => {
    const id = `combo-${seq + 1}`;
    const total = 5 + Math.floor(Math.random() * 40);
    let count = 0;
    const tick = setInterval(() => {
      count = Math.min(total, count + 1 + Math.floor(Math.random() * 3));
      const common = { sender: name.toLowerCase(), name, gift };
      if (count < total) {
        feed({ type: "combo", ...event({ ...common, combo: id, count }) });
        return;
      }
      clearInterval(tick);
      feed({ type: "gift", ...event({ ...common, combo: id, count, coins: count * unit }) });
      credit(name, count * unit);
    }, 120);
  };

  const every = Math.max(200, (opts.duration + opts.gap) * 0.8);
  setInterval(() => {
    const name = SENDERS[Math.floor(Math.random() * SENDERS.length)];
    const [gift, unit, , streakable] = pick();
    if (streakable && Math.random() < 0.3) {
      combo(name, gift, unit);
      return;
    }
    const count = streakable ? 1 + Math.floor(Math.random() * 5) : 1;
    feed({ type: "gift", ...event({ sender: name.toLowerCase(), name, gift, count,
      coins: count * unit }) });
    credit(name, count * unit);
  }, every);
}
