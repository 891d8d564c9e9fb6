// One alert's data and DOM: the tier decides the animation (overlay.css), the catalog the art.
// Everything user-supplied (names) goes in as text, never as markup.

import { artFor, giftName, tierOf } from "./gifts.js";

const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};

export function alertFromGift(msg) {
  const unit = msg.count > 0 ? msg.coins / msg.count : msg.coins;
  return {
    eids: [msg.eid],
    events: 1,
    seq: msg.seq,
    gift: msg.gift,
    count: msg.count,
    coins: msg.coins,
    sender: msg.sender,
    name: msg.name,
    combo: msg.combo || null,
    tier: tierOf(msg.gift, unit),
  };
}

function confetti(n) {
  const fx = el("div", "gw-confetti");
  for (let i = 0; i < n; i++) {
    const p = el("i");
    const angle = (i / n) * Math.PI * 2 + Math.random() * 0.4;
    const dist = 120 + Math.random() * 260;
    p.style.setProperty("--x", `${Math.cos(angle) * dist}px`);
    p.style.setProperty("--y", `${Math.sin(angle) * dist}px`);
    p.style.setProperty("--r", `${Math.round(Math.random() * 720 - 360)}deg`);
    p.style.setProperty("--h", `${Math.round((i * 360) / n)}`);
    fx.append(p);
  }
  return fx;
}

export function renderAlert(alert, durationMs) {
  const root = el("div", `gw-alert gw-tier-${alert.tier}`);
  root.style.setProperty("--gw-dur", `${durationMs}ms`);
  root.dataset.eids = alert.eids.join(" ");
  root.dataset.gift = alert.gift;
  if (alert.tier >= 3) root.append(el("div", "gw-rays"));
  if (alert.tier >= 4) root.append(confetti(alert.tier === 5 ? 48 : 24));
  if (alert.tier === 5) {
    const cosmos = el("div", "gw-cosmos");
    cosmos.append(el("div", "gw-stars"), el("div", "gw-galaxy"));
    for (let i = 0; i < 3; i++) cosmos.append(el("div", `gw-shock gw-shock-${i}`));
    const orbit = el("div", "gw-orbit");
    orbit.append(el("div", "gw-planet"), el("div", "gw-moon"));
    cosmos.append(orbit);
    root.prepend(cosmos);
    root.append(el("div", "gw-headline", giftName(alert.gift)));
  }
  const card = el("div", "gw-card");
  const icon = el("div", "gw-icon");
  icon.innerHTML = artFor(alert.gift); // our own static SVG, never user input
  const text = el("div", "gw-text");
  text.append(el("div", "gw-sender", alert.name));
  const line = el("div", "gw-line");
  line.append("sent ", el("b", "gw-gift", giftName(alert.gift)));
  line.append(" ", el("span", "gw-count", `x ${alert.count}`));
  text.append(line);
  card.append(icon, text);
  root.append(card);
  return root;
}
