// Gift presentation: display names, tiers, inline SVG art and counted nouns.
//
// The server's catalog is the source of truth for names and prices; when it cannot be loaded the
// overlay still works from the event alone (`coins / count` gives the unit price, hence the tier).

import { ART, artKey } from "./gift-art.js";

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

// -- art: one distinct inline SVG per catalog gift (gift-art.js) --

export function artFor(giftId) {
  return ART[artKey(giftId, giftInfo(giftId)?.animation)];
}

/** "1 coin", "2 coins", "1,000 coins": counts shown to people agree with their number. */
export function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}
