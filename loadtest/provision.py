"""Setting the stage through the public HTTP API: catalog, rooms going live, funded wallets.

Tokens are minted here with the server's secret (the harness either spawned the server with a
secret of its own or was given `GIFTWIRE_JWT_SECRET`), exactly as an identity service would.
Coins arrive by admin grant (`POST /api/admin/grant`), the way operators fund test accounts;
rooms go live by their creator (`POST /api/rooms/{room}/live`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from loadtest.client import ConnSpec
from loadtest.scenarios import Plan
from loadtest.worker import GiftMix
from server.auth import TokenIssuer

GRANT_COINS = 10**9  # per sender: never the limit, so every refusal in a run means something
PARALLEL = 32


class ProvisionError(RuntimeError):
    pass


@dataclass
class Stage:
    run: str
    rooms: list[str]
    conns: list[ConnSpec]
    mix: GiftMix
    prices: dict[int, int]  # send kind (0 cheap, 1 streak click, 2 big) -> coins
    grants: dict[str, int]
    probe_tokens: dict[str, str]  # room -> a viewer token for the end-of-run probe

    @property
    def viewer_prefix(self) -> str:
        return f"{self.run}v"


def choose_mix(catalog: dict[str, object], plan: Plan) -> GiftMix:
    gifts = catalog.get("gifts")
    if not isinstance(gifts, list) or not gifts:
        raise ProvisionError("the server's catalog lists no gifts")
    priced = sorted((int(g["coins"]), str(g["id"]), bool(g.get("streakable"))) for g in gifts)
    cheap = priced[0]
    streak = next((g for g in priced if g[2]), None)
    big = priced[-1]
    return GiftMix(
        cheap=(cheap[1], cheap[0]),
        streak=(streak[1], streak[0]) if streak else None,
        big=(big[1], big[0]),
        combo_share=plan.combo_share if streak else 0.0,
        big_share=plan.big_share,
    )


def layout(plan: Plan, run: str, issuer: TokenIssuer,
           rooms: list[str] | None = None) -> tuple[list[str], list[ConnSpec]]:
    """Who is where: viewers spread evenly over the rooms, senders spread evenly among them.
    `rooms` names them when placement matters (a cluster: chaos.place_rooms)."""
    rooms = rooms or [f"{run}-r{i}" for i in range(plan.rooms)]
    conns: list[ConnSpec] = []
    slow_every = round(1 / plan.slow_fraction) if plan.slow_fraction > 0 else 0
    sender_every = plan.viewers / plan.senders if plan.senders else 0.0
    next_sender = 0.0
    readers = 0
    for i in range(plan.viewers):
        user = f"{run}v{i}"
        sender = plan.senders > 0 and i >= next_sender
        if sender:
            next_sender += sender_every
        # Slow viewers are never senders: their own gifts would stall behind what they ignore.
        # Every slow_every-th of the others, so the share holds whatever the sender count.
        slow = False
        if not sender:
            readers += 1
            slow = bool(slow_every) and readers % slow_every == 0
        room = rooms[i % plan.rooms]
        conns.append(ConnSpec(user, issuer.mint(user, "viewer"), room, sender=sender, slow=slow))
    for r, room in enumerate(rooms):
        for k in range(plan.overlays_per_room):
            owner = f"{run}c{r}"
            token = issuer.mint(owner, "overlay", room=room)
            conns.append(ConnSpec(f"{owner}o{k}", token, room, overlay=True))
    return rooms, conns


async def stage(base_url: str, plan: Plan, run: str, issuer: TokenIssuer,
                rooms: list[str] | None = None) -> Stage:
    rooms, conns = layout(plan, run, issuer, rooms)
    admin = issuer.mint(f"{run}admin", "admin")
    limits = httpx.Limits(max_connections=PARALLEL)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
        resp = await http.get("/api/catalog")
        _ok(resp, "GET /api/catalog")
        mix = choose_mix(resp.json(), plan)
        for r, room in enumerate(rooms):
            creator = issuer.mint(f"{run}c{r}", "creator")
            resp = await http.post(f"/api/rooms/{room}/live", json={"title": "load test"},
                                   headers={"authorization": f"Bearer {creator}"})
            _ok(resp, f"POST /api/rooms/{room}/live")
        grants = {c.user: GRANT_COINS for c in conns if c.sender}
        sem = asyncio.Semaphore(PARALLEL)

        async def grant(user: str) -> None:
            async with sem:
                resp = await http.post(
                    "/api/admin/grant",
                    json={"user": user, "coins": GRANT_COINS, "grant_id": f"{user}-fund"},
                    headers={"authorization": f"Bearer {admin}"},
                )
                _ok(resp, "POST /api/admin/grant")

        await asyncio.gather(*(grant(u) for u in grants))
    prices = {0: mix.cheap[1], 1: mix.streak[1] if mix.streak else 0, 2: mix.big[1]}
    probes = {room: issuer.mint(f"{run}probe{i}", "viewer") for i, room in enumerate(rooms)}
    return Stage(run, rooms, conns, mix, prices, grants, probes)


def _ok(resp: httpx.Response, what: str) -> None:
    if resp.status_code != 200:
        raise ProvisionError(f"{what} answered {resp.status_code}: {resp.text[:300]}")
