// Inline SVG art, one distinct picture per catalog gift (keyed by the catalog's `animation`), and
// a gift box for gifts the catalog does not know. Our own drawings, never user input; colours
// that follow the overlay's theme come from CSS variables.

export const ART = {
  rose: `<svg viewBox="0 0 64 64"><path d="M31 34 C30 44 33 52 32 62" stroke="#2f8f3a"
    stroke-width="3" fill="none"/><path d="M32 48 C24 44 20 46 17 42 C24 40 29 42 32 48Z"
    fill="#3fae4a"/><circle cx="32" cy="22" r="14" fill="#e0245e"/><path d="M22 20 C26 10 38 10
    42 20 C36 16 28 16 22 20Z" fill="#ff5c8a"/><path d="M26 26 C30 18 36 18 38 26 C34 23 30 23
    26 26Z" fill="#b3123f"/></svg>`,
  "finger-heart": `<svg viewBox="0 0 64 64"><path d="M18 60 L18 40 C18 34 22 32 26 33 L40 36
    C44 37 44 42 40 43 L30 42" fill="#f2c29b" stroke="#c98d63" stroke-width="2"/><path d="M26 33
    L30 18 C31 14 36 15 35 19 L33 34" fill="#f2c29b" stroke="#c98d63" stroke-width="2"/><path
    d="M44 8 C40 2 32 6 36 12 L44 20 L52 12 C56 6 48 2 44 8Z" fill="#ff3d7f"/></svg>`,
  "ice-cream": `<svg viewBox="0 0 64 64"><path d="M20 30 L32 62 L44 30Z" fill="#e3a857"
    stroke="#b07a2e" stroke-width="2"/><path d="M24 36 L40 36 M26 44 L38 44" stroke="#b07a2e"
    stroke-width="2"/><circle cx="32" cy="22" r="13" fill="#ffd1e3"/><circle cx="24" cy="28"
    r="7" fill="#ffe9a8"/><circle cx="40" cy="28" r="7" fill="#b8f0d8"/><circle cx="32" cy="8"
    r="4" fill="#e0245e"/></svg>`,
  doughnut: `<svg viewBox="0 0 64 64"><circle cx="32" cy="34" r="24" fill="#d9904a"/><circle
    cx="32" cy="32" r="22" fill="#ff7eb6"/><circle cx="32" cy="32" r="8" fill="#d9904a"/><circle
    cx="32" cy="32" r="6" fill="var(--gw-hole, #1a1030)"/><path d="M18 22l4 2M42 18l3 3M46 36l3-2
    M20 40l2 3M30 48l4-1" stroke="#fff" stroke-width="2.5" stroke-linecap="round"/></svg>`,
  "hand-hearts": `<svg viewBox="0 0 64 64"><path d="M32 58 C14 44 10 34 14 26 C18 18 28 18 32
    28 C36 18 46 18 50 26 C54 34 50 44 32 58Z" fill="none" stroke="#f2c29b" stroke-width="7"
    stroke-linejoin="round"/><path d="M32 50 C20 40 18 34 21 29 C24 25 29 26 32 32 C35 26 40 25
    43 29 C46 34 44 40 32 50Z" fill="#ff3d7f"/><circle cx="12" cy="10" r="3" fill="#ff9ec0"/>
    <circle cx="52" cy="8" r="2.5" fill="#ff9ec0"/></svg>`,
  corgi: `<svg viewBox="0 0 64 64"><path d="M14 14 L22 30 L10 30Z M50 14 L42 30 L54 30Z"
    fill="#e58a3a"/><ellipse cx="32" cy="36" rx="20" ry="18" fill="#f0a04b"/><path d="M22 40
    C24 54 40 54 42 40 C38 46 26 46 22 40Z" fill="#fff"/><circle cx="25" cy="32" r="3"
    fill="#222"/><circle cx="39" cy="32" r="3" fill="#222"/><ellipse cx="32" cy="42" rx="4"
    ry="3" fill="#222"/><path d="M32 45 L32 48" stroke="#222" stroke-width="2"/></svg>`,
  "money-gun": `<svg viewBox="0 0 64 64"><path d="M6 26 L44 26 L44 36 L26 36 L22 52 L12 52
    L16 36 L6 36Z" fill="#555b66" stroke="#2b2f36" stroke-width="2"/><rect x="44" y="28"
    width="6" height="6" fill="#2b2f36"/><rect x="48" y="8" width="14" height="8" rx="1"
    fill="#3fae4a" transform="rotate(20 55 12)"/><rect x="50" y="40" width="14" height="8" rx="1"
    fill="#3fae4a" transform="rotate(-15 57 44)"/><rect x="52" y="22" width="12" height="7"
    rx="1" fill="#6fd27a"/></svg>`,
  "sports-car": `<svg viewBox="0 0 64 64"><path d="M4 40 C6 30 14 28 22 27 L30 20 C34 18 44 18
    48 22 L54 28 C60 29 62 33 62 40Z" fill="#ff3b30"/><path d="M31 22 L28 28 L46 28 L44 22Z"
    fill="#bfe6ff"/><circle cx="16" cy="42" r="7" fill="#222"/><circle cx="16" cy="42" r="3"
    fill="#ccc"/><circle cx="50" cy="42" r="7" fill="#222"/><circle cx="50" cy="42" r="3"
    fill="#ccc"/></svg>`,
  interstellar: `<svg viewBox="0 0 64 64"><path d="M32 4 C42 14 44 30 40 44 L24 44 C20 30 22
    14 32 4Z" fill="#e8eef7" stroke="#8fa3bf" stroke-width="2"/><circle cx="32" cy="22" r="5"
    fill="#3aa0ff" stroke="#1f5f9f" stroke-width="2"/><path d="M24 36 L14 48 L24 46Z M40 36
    L50 48 L40 46Z" fill="#ff3b30"/><path d="M26 46 C28 56 32 60 32 60 C32 60 36 56 38 46Z"
    fill="#ffb020"/><circle cx="8" cy="12" r="1.5" fill="#fff"/><circle cx="56" cy="20" r="1.5"
    fill="#fff"/></svg>`,
  lion: `<svg viewBox="0 0 64 64"><circle cx="32" cy="32" r="27" fill="#b8642a"/><circle
    cx="32" cy="34" r="18" fill="#f0b44b"/><circle cx="25" cy="30" r="3" fill="#222"/><circle
    cx="39" cy="30" r="3" fill="#222"/><path d="M28 38 L36 38 L32 43Z" fill="#5a2e12"/><path
    d="M32 43 C30 47 26 47 25 45 M32 43 C34 47 38 47 39 45" stroke="#5a2e12" stroke-width="2"
    fill="none"/><path d="M20 8 L26 16 L32 6 L38 16 L44 8 L42 20 L22 20Z" fill="#ffd23f"/></svg>`,
  universe: `<svg viewBox="0 0 64 64"><defs><radialGradient id="gwp" cx="35%" cy="35%">
    <stop offset="0" stop-color="#9ef"/><stop offset=".55" stop-color="#5a3dff"/><stop offset="1"
    stop-color="#1a0b4a"/></radialGradient></defs><ellipse cx="32" cy="34" rx="30" ry="9"
    fill="none" stroke="#ffd76a" stroke-width="3" opacity=".85"/><circle cx="32" cy="32" r="17"
    fill="url(#gwp)"/><path d="M3 34 C14 44 50 44 61 34" stroke="#ffd76a" stroke-width="3"
    fill="none"/><circle cx="10" cy="10" r="1.6" fill="#fff"/><circle cx="54" cy="8" r="1.2"
    fill="#fff"/><circle cx="56" cy="54" r="1.6" fill="#fff"/></svg>`,
  box: `<svg viewBox="0 0 64 64"><rect x="8" y="26" width="48" height="32" rx="3"
    fill="var(--gw-accent, #7c5cff)"/><rect x="4" y="18" width="56" height="12" rx="3"
    fill="var(--gw-accent-2, #a48bff)"/><rect x="29" y="18" width="6" height="40" fill="#ffd23f"/>
    <path d="M32 18 C24 6 14 10 20 18Z M32 18 C40 6 50 10 44 18Z" fill="#ffd23f"/></svg>`,
};

// Gifts the catalog does not know (or before it loaded): the id's words pick a picture.
const KEYWORDS = [
  ["universe", "universe"], ["galaxy", "universe"], ["planet", "universe"],
  ["interstellar", "interstellar"], ["rocket", "interstellar"], ["doughnut", "doughnut"],
  ["car", "sports-car"], ["rose", "rose"], ["flower", "rose"], ["hand_heart", "hand-hearts"],
  ["heart", "finger-heart"], ["ice", "ice-cream"], ["corgi", "corgi"], ["dog", "corgi"],
  ["money", "money-gun"], ["lion", "lion"],
];

export function artKey(giftId, animation) {
  if (animation && ART[animation]) return animation;
  for (const [word, art] of KEYWORDS) if (giftId.includes(word)) return art;
  return "box";
}
