// Gift presentation: display names, tiers and inline SVG art.
//
// The server's catalog is the source of truth for names and prices; when it cannot be loaded the
// overlay still works from the event alone (`coins / count` gives the unit price, hence the tier).

const catalog = new Map(); // gift id -> {id, name, coins, streakable, animation, tier}

// Unit price (coins) at which each tier starts, matching server/money/data/catalog.json's tiers; used
// for gifts the catalog does not know. Tier 5 is the Universe class.
export const TIER_FLOORS = [0, 10, 200, 1000, 20000];

export function tierOf(giftId, unitCoins) {
  const known = catalog.get(giftId)?.tier;
  if (Number.isInteger(known) && known >= 1 && known <= 5) return known;
  let tier = 1;
  for (let i = 1; i < TIER_FLOORS.length; i++) if (unitCoins >= TIER_FLOORS[i]) tier = i + 1;
  return tier;
}

// Names for the demo catalog's ids, used until (or unless) the server's catalog answers.
const FALLBACK_NAMES = {
  rose: "Rose",
  finger_heart: "Finger Heart",
  ice_cream: "Ice Cream Cone",
  doughnut: "Doughnut",
  hand_hearts: "Hand Hearts",
  corgi: "Corgi",
  money_gun: "Money Gun",
  sports_car: "Sports Car",
  interstellar: "Interstellar",
  lion: "Lion",
  universe: "Universe",
};


export function titleCase(id) {
  return id.replace(/[_.~-]+/g, " ").replace(/\b\w/g, (c) => c.toUpperCase());
}

export function giftName(id) {
  return catalog.get(id)?.name || FALLBACK_NAMES[id] || titleCase(id);
}

export function giftInfo(id) {
  return catalog.get(id);
}

/** Load the server's catalog; any failure leaves the fallbacks in place. */
export async function loadCatalog(url = "/api/catalog") {
  try {
    const res = await fetch(url, { headers: { accept: "application/json" } });
    if (!res.ok) return false;
    const body = await res.json();
    const gifts = Array.isArray(body) ? body : body.gifts || [];
    for (const g of gifts) {
      if (g && typeof g.id === "string") catalog.set(g.id, g);
    }
    return gifts.length > 0;
  } catch {
    return false;
  }
}

// -- art: small inline SVGs, one per kind of gift; colours come from CSS variables --

const ART = {
  rose: `<svg viewBox="0 0 64 64"><path d="M31 34 C30 44 33 52 32 62" stroke="#2f8f3a"
    stroke-width="3" fill="none"/><path d="M32 48 C24 44 20 46 17 42 C24 40 29 42 32 48Z"
    fill="#3fae4a"/><circle cx="32" cy="22" r="14" fill="#e0245e"/><path d="M22 20 C26 10 38 10
    42 20 C36 16 28 16 22 20Z" fill="#ff5c8a"/><path d="M26 26 C30 18 36 18 38 26 C34 23 30 23
    26 26Z" fill="#b3123f"/></svg>`,
  heart: `<svg viewBox="0 0 64 64"><path d="M32 56 C10 40 4 30 8 20 C12 10 26 8 32 20 C38 8 52
    10 56 20 C60 30 54 40 32 56Z" fill="#ff3d7f"/><path d="M16 20 C18 15 23 14 26 16" stroke="#fff"
    stroke-width="3" fill="none" stroke-linecap="round" opacity=".7"/></svg>`,
  star: `<svg viewBox="0 0 64 64"><path d="M32 4 L40 24 L61 24 L44 37 L51 58 L32 45 L13 58 L20 37
    L3 24 L24 24Z" fill="#ffd23f" stroke="#f5a300" stroke-width="2"/></svg>`,
  crown: `<svg viewBox="0 0 64 64"><path d="M6 20 L18 34 L32 10 L46 34 L58 20 L52 52 L12 52Z"
    fill="#ffc933" stroke="#c98a00" stroke-width="2"/><circle cx="32" cy="40" r="5"
    fill="#e0245e"/><circle cx="18" cy="44" r="3" fill="#3aa0ff"/><circle cx="46" cy="44" r="3"
    fill="#3aa0ff"/></svg>`,
  universe: `<svg viewBox="0 0 64 64"><defs><radialGradient id="gwp" cx="35%" cy="35%">
    <stop offset="0" stop-color="#9ef"/><stop offset=".55" stop-color="#5a3dff"/><stop offset="1"
    stop-color="#1a0b4a"/></radialGradient></defs><ellipse cx="32" cy="34" rx="30" ry="9"
    fill="none" stroke="#ffd76a" stroke-width="3" opacity=".85"/><circle cx="32" cy="32" r="17"
    fill="url(#gwp)"/><path d="M3 34 C14 44 50 44 61 34" stroke="#ffd76a" stroke-width="3"
    fill="none"/><circle cx="10" cy="10" r="1.6" fill="#fff"/><circle cx="54" cy="8" r="1.2"
    fill="#fff"/><circle cx="56" cy="54" r="1.6" fill="#fff"/></svg>`,
  doughnut: `<svg viewBox="0 0 64 64"><circle cx="32" cy="34" r="24" fill="#d9904a"/><circle
    cx="32" cy="32" r="22" fill="#ff7eb6"/><circle cx="32" cy="32" r="8" fill="#d9904a"/><circle
    cx="32" cy="32" r="6" fill="var(--gw-hole, #1a1030)"/><path d="M18 22l4 2M42 18l3 3M46 36l3-2
    M20 40l2 3M30 48l4-1" stroke="#fff" stroke-width="2.5" stroke-linecap="round"/></svg>`,
  car: `<svg viewBox="0 0 64 64"><path d="M4 40 C6 30 14 28 22 27 L30 20 C34 18 44 18 48 22 L54
    28 C60 29 62 33 62 40Z" fill="#ff3b30"/><path d="M31 22 L28 28 L46 28 L44 22Z" fill="#bfe6ff"/>
    <circle cx="16" cy="42" r="7" fill="#222"/><circle cx="16" cy="42" r="3" fill="#ccc"/><circle
    cx="50" cy="42" r="7" fill="#222"/><circle cx="50" cy="42" r="3" fill="#ccc"/></svg>`,
  box: `<svg viewBox="0 0 64 64"><rect x="8" y="26" width="48" height="32" rx="3"
    fill="var(--gw-accent, #7c5cff)"/><rect x="4" y="18" width="56" height="12" rx="3"
    fill="var(--gw-accent-2, #a48bff)"/><rect x="29" y="18" width="6" height="40" fill="#ffd23f"/>
    <path d="M32 18 C24 6 14 10 20 18Z M32 18 C40 6 50 10 44 18Z" fill="#ffd23f"/></svg>`,
};

const ART_KEYWORDS = [
  ["universe", "universe"], ["galaxy", "universe"], ["planet", "universe"],
  ["interstellar", "universe"], ["doughnut", "doughnut"], ["car", "car"],
  ["rose", "rose"], ["flower", "rose"], ["heart", "heart"], ["star", "star"],
  ["crown", "crown"], ["lion", "crown"],
];

export function artFor(giftId) {
  const key = giftInfo(giftId)?.animation;
  if (key && ART[key]) return ART[key];
  for (const [word, art] of ART_KEYWORDS) if (giftId.includes(word)) return ART[art];
  return ART.box;
}
