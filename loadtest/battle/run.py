"""One `battle` run: two server processes on one Redis and Postgres, two live rooms in a timed
battle, senders gifting into both rooms before, during and after the window, and one server
SIGKILLed mid-battle. The verdict compares each room's final battle score with the coins the
Postgres ledger (after the flusher caught up) records for gifts to that room debited inside the
window: they must be equal (docs/battles.md says why they can be)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from loadtest import spawn
from loadtest.battle.senders import Sender
from loadtest.scenarios import Plan
from server.auth import TokenIssuer
from server.config import Config
from server.storage.keys import Keys

ROOMS = ("red", "blue")
LEDGER_WAIT_S = 120.0
AFTER_END_S = 1.5  # senders keep gifting past the end: those gifts must not score
# The killed server's pending ledger batch is claimed by the survivor's flusher after this idle
# time (production default 30 s): the run checks that the ledger gets every gift, not how long a
# dead consumer's claim waits, so it waits 5 s for it, not 30.
CLAIM_IDLE_MS = 5_000


def battle_config(run_id: str) -> Config:
    return Config(key_prefix=f"lb{run_id}:", db_schema=f"lb_{run_id}",
                  jwt_secret="battle-" + secrets.token_hex(16), log_level="INFO",
                  drain_timeout_s=5.0, flush_claim_idle_ms=CLAIM_IDLE_MS)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _call(http: httpx.AsyncClient, path: str, token: str, body: Any = None) -> Any:
    resp = await http.post(path, json=body, headers=_bearer(token))
    if resp.status_code != 200:
        raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text}")
    return resp.json()


async def _provision(http: httpx.AsyncClient, issuer: TokenIssuer, run_id: str,
                     senders: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    creators = {room: issuer.mint(f"{run_id}-{room}", "creator") for room in ROOMS}
    for room, token in creators.items():
        await _call(http, f"/api/rooms/{room}/live", token, {"title": f"battle {room}"})
    admin = issuer.mint(f"{run_id}-admin", "admin")
    users = [(f"{run_id}-fan{i}", issuer.mint(f"{run_id}-fan{i}", "viewer"))
             for i in range(senders)]
    for user, _ in users:
        await _call(http, "/api/admin/grant", admin,
                    {"user": user, "coins": 1_000_000, "grant_id": f"{user}-fund"})
    return creators, users


async def _until_ended(http: httpx.AsyncClient, token: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = await http.get(f"/api/rooms/{ROOMS[0]}/battle", headers=_bearer(token))
        body: dict[str, Any] = resp.json()
        if body.get("state") == "ended" or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)  # polling another process's state over HTTP


async def _ledger(dsn: str, schema: str, start: int, end: int, txs: int, timeout: float
                  ) -> dict[str, Any]:
    """The ledger's coins per room inside [start, end), once it holds every acked gift."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        deadline = time.monotonic() + timeout
        while True:
            n = await conn.fetchval(
                "SELECT count(*) FROM ledger_tx WHERE kind = 'gift' AND room = ANY($1)",
                list(ROOMS))
            if n >= txs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # the flusher is another process
        rows = await conn.fetch(
            """SELECT room, count(*) AS n, sum(coins)::bigint AS coins FROM ledger_tx
               WHERE kind = 'gift' AND room = ANY($1) AND stream_ms >= $2 AND stream_ms < $3
               GROUP BY room""", list(ROOMS), start, end)
        total = await conn.fetchval(
            "SELECT coalesce(sum(coins), 0)::bigint FROM ledger_tx WHERE kind = 'gift' "
            "AND room = ANY($1)", list(ROOMS))
    finally:
        await conn.close()
    inside = {r["room"]: (int(r["n"]), int(r["coins"])) for r in rows}
    return {"gifts_in_ledger": int(n), "coins_all": int(total),
            "coins_in_window": {room: inside.get(room, (0, 0))[1] for room in ROOMS},
            "gifts_in_window": {room: inside.get(room, (0, 0))[0] for room in ROOMS}}


async def run_battle(plan: Plan, console: Console) -> dict[str, Any]:
    run_id = secrets.token_hex(3)
    duration = max(2, round(plan.duration_s))
    per_sender_s = max(plan.senders / plan.rate, 0.02) if plan.rate else 0.05
    with spawn.services(cluster=plan.redis_cluster) as services:
        base = spawn.server_config(battle_config(run_id), services)
        servers = [spawn.ServerProcess(spawn.server_config(base, services),
                                       services.workdir / f"server{i}.log") for i in range(2)]
        senders: list[Sender] = []
        try:
            for s in servers:
                s.start()
            for s in servers:
                await asyncio.to_thread(s.wait_ready)
            issuer = TokenIssuer(base.jwt_secret, Keys(base.key_prefix, base.wallet_shards))
            urls = [s.ws_url for s in servers]
            async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30.0) as http:
                creators, users = await _provision(http, issuer, run_id, plan.senders)
                senders = [Sender(u, t, urls[i % 2:] + urls[:i % 2], ROOMS)
                           for i, (u, t) in enumerate(users)]
                # Before the battle: gifts that must not score.
                await asyncio.gather(*(s.gift(ROOMS[0], f"pre-{s.user}", "rose")
                                       for s in senders))
                a, b = creators[ROOMS[0]], creators[ROOMS[1]]
                battle = await _call(http, "/api/battles", a,
                                     {"room": ROOMS[0], "opponent": ROOMS[1]})
                await _call(http, f"/api/battles/{battle['id']}/accept", b)
                started = await _call(http, f"/api/battles/{battle['id']}/start", a,
                                      {"duration_s": duration})
                start, end = started["starts_at"], started["ends_at"]
                console.print(f"battle {battle['id']}: {duration} s, {len(senders)} senders on "
                              f"2 servers, {1 / per_sender_s:.0f} gifts/s each")
                load = asyncio.gather(*(s.run(end / 1000 + AFTER_END_S, per_sender_s, "g-")
                                        for s in senders))
                await asyncio.sleep(duration / 2)  # mid-battle, by the battle's own clock
                await asyncio.to_thread(servers[1].kill)
                killed_at = int(time.time() * 1000)
                console.print("server 2 SIGKILLed mid-battle")
                await load
                result = await _until_ended(http, a, 30.0)
                seen_ended = int(time.time() * 1000)
            acked = sum(len(s.acked) for s in senders)
            waited = time.monotonic()
            ledger = await _ledger(services.database_url, base.db_schema, start, end, acked,
                                   LEDGER_WAIT_S)
            ledger["ledger_wait_s"] = round(time.monotonic() - waited, 1)
        finally:
            for s in senders:
                with contextlib.suppress(Exception):
                    await s.close()
            for s in servers:
                s.stop()
            if not services.embedded:
                await spawn.drop_run_data(base)
    scores = {side["room"]: side["score"] for side in result.get("sides", [])}
    out = {
        "scenario": "battle", "battle": result.get("id"), "state": result.get("state"),
        "duration_s": duration, "senders": len(senders), "server_processes": 2,
        "redis_cluster": bool(plan.redis_cluster),
        "killed_mid_battle": start < killed_at < end, "gifts_acked": acked,
        "reconnects": sum(s.reconnects for s in senders),
        "retries": sum(s.retries for s in senders),
        "duplicates": sum(s.duplicates for s in senders), "scores": scores,
        "result": result.get("result"), "winner": result.get("winner"),
        # The senders stop AFTER_END_S past the end, so this is at most that late by itself.
        "ended_seen_ms_after_end": seen_ended - end, **ledger,
    }
    out["ok"] = (out["state"] == "ended" and out["killed_mid_battle"]
                 and ledger["gifts_in_ledger"] == acked
                 and all(scores.get(r) == ledger["coins_in_window"][r] for r in ROOMS)
                 and all(scores.get(r, 0) > 0 for r in ROOMS))
    print_table(out, console)
    return out


def print_table(out: dict[str, Any], console: Console) -> None:
    t = Table(title=f"battle {out['battle']}: {out['state']}, winner {out['winner']}")
    t.add_column("room")
    t.add_column("battle score", justify="right")
    t.add_column("ledger coins in window", justify="right")
    t.add_column("ledger gifts in window", justify="right")
    for room in ROOMS:
        t.add_row(room, str(out["scores"].get(room)), str(out["coins_in_window"][room]),
                  str(out["gifts_in_window"][room]))
    console.print(t)
    console.print(f"gifts acked {out['gifts_acked']}, in the ledger {out['gifts_in_ledger']} "
                  f"(coins {out['coins_all']}); reconnects after the kill {out['reconnects']}, "
                  f"retries {out['retries']}, duplicate acks {out['duplicates']}; end seen "
                  f"{out['ended_seen_ms_after_end']} ms after the window; the ledger caught up in "
                  f"{out['ledger_wait_s']} s")
    console.print("[bold green]OK[/bold green]" if out["ok"] else "[bold red]FAIL[/bold red]")
