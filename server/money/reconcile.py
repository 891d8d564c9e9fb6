"""Reconcile (do Redis and the Postgres ledger agree?) and rebuild (Redis from the ledger alone).

Reconcile first drains the ledger streams (so everything Redis accepted is in Postgres), then
compares every wallet's coins, diamonds and rounding carry with the ledger, and checks that each
ledger transaction has its entries, summing to zero per currency, and that each gift has its
creator credit. Wallets that differ are checked again after another drain, so a spend racing the
comparison is not reported; what still differs is real.

Rebuild writes into an empty Redis (refusing a Redis that has wallets, unless forced): balances,
diamonds, carries, frozen flags, today's spending, own daily limits, and the idempotency records
(deposit, reversal and redemption records all; gift and credit records inside their TTL window).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import asyncpg

from server.money import catalog as catalog_mod
from server.money import ledger
from server.money.flusher import Flusher, ensure_groups
from server.money.wallet import TX_TTL_S, Wallet
from server.runtime import Runtime
from server.storage.keys import Keys

_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Difference:
    subject: str  # a user id or a ledger key
    what: str  # coins, diamonds, carry, unbalanced, missing_credit
    redis: int | None
    ledger: int | None

    def __str__(self) -> str:
        return f"{self.subject}: {self.what}: redis={self.redis} ledger={self.ledger}"


async def _redis_wallets(rt: Runtime, users: set[str] | None = None) -> dict[str, tuple[int, ...]]:
    """user -> (coins, diamonds, carry) for every wallet in Redis (or the given users)."""
    if users is None:
        users = set()
        for shard in range(rt.keys.wallet_shards):
            users |= {u.decode() for u in await rt.redis.smembers(rt.keys.wallets_index(shard))}
    ordered = sorted(users)
    out: dict[str, tuple[int, ...]] = {}
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i : i + _CHUNK]
        async with rt.redis.pipeline(transaction=False) as pipe:
            for user in chunk:
                pipe.hmget(rt.keys.wallet(user), ["coins", "diamonds", "carry"])
            rows = await pipe.execute()
        for user, row in zip(chunk, rows, strict=True):
            out[user] = tuple(int(v or 0) for v in row)
    return out


async def _ledger_wallets(rt: Runtime) -> dict[str, tuple[int, ...]]:
    balances = await ledger.user_balances(rt.pool)
    carries = {
        r["user_id"]: r["carry"]
        for r in await rt.pool.fetch(
            """SELECT DISTINCT ON (user_id) user_id, carry FROM ledger_tx WHERE kind = 'credit'
               ORDER BY user_id, stream_ms DESC, stream_seq DESC"""
        )
    }
    users = set(balances) | set(carries)
    return {u: (*balances.get(u, (0, 0)), int(carries.get(u) or 0)) for u in users}


def _compare(
    redis: dict[str, tuple[int, ...]], led: dict[str, tuple[int, ...]], users: set[str]
) -> list[Difference]:
    diffs = []
    for user in sorted(users):
        r, g = redis.get(user, (0, 0, 0)), led.get(user, (0, 0, 0))
        for i, what in enumerate(("coins", "diamonds", "carry")):
            if r[i] != g[i]:
                diffs.append(Difference(user, what, r[i], g[i]))
    return diffs


async def _ledger_checks(rt: Runtime) -> list[Difference]:
    diffs = [
        Difference(r["tx_key"], f"unbalanced {r['currency']}", None, r["total"])
        for r in await rt.pool.fetch(
            """SELECT t.tx_key, e.currency, sum(e.amount)::bigint AS total
               FROM ledger_entries e JOIN ledger_tx t ON t.id = e.tx_id
               GROUP BY t.tx_key, e.currency HAVING sum(e.amount) <> 0"""
        )
    ]
    diffs += [
        Difference(r["tx_key"], "missing_entries", None, None)
        for r in await rt.pool.fetch(
            """SELECT t.tx_key FROM ledger_tx t
               WHERE CASE WHEN t.kind IN ('credit', 'redeem') THEN t.diamonds ELSE t.coins END <> 0
               AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.tx_id = t.id)"""
        )
    ]
    diffs += [
        Difference(r["tx_key"], "missing_credit", None, None)
        for r in await rt.pool.fetch(
            """SELECT g.tx_key FROM ledger_tx g WHERE g.kind = 'gift' AND g.counterparty IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM ledger_tx c
                               WHERE c.tx_key = 'c:' || substr(g.tx_key, 3))"""
        )
    ]
    return diffs


async def reconcile(rt: Runtime, flusher: Flusher | None, *, passes: int = 3) -> list[Difference]:
    """Every difference between Redis and the ledger (empty: they agree)."""
    users: set[str] | None = None
    diffs: list[Difference] = []
    for _ in range(passes):
        if flusher is not None:
            await flusher.drain(claim_all=True)
        led = await _ledger_wallets(rt)
        red = await _redis_wallets(rt, users)
        check = set(led) | set(red) if users is None else users
        diffs = _compare(red, led, check)
        if not diffs or flusher is None:
            break
        users = {d.subject for d in diffs}
    return diffs + await _ledger_checks(rt)


# -- rebuild --------------------------------------------------------------------------------
class RebuildRefused(Exception):
    """Redis already holds wallets; rebuild would overwrite live state."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    wallets: int
    records: int


async def redis_has_wallets(rt: Runtime) -> bool:
    for shard in range(rt.keys.wallet_shards):
        if await rt.redis.scard(rt.keys.wallets_index(shard)):
            return True
    return False


async def rebuild(rt: Runtime, wallet: Wallet, *, force: bool = False) -> RebuildReport:
    if not force and await redis_has_wallets(rt):
        raise RebuildRefused("Redis already holds wallets (use --force to overwrite them)")
    k = rt.keys
    await catalog_mod.publish(rt.redis, k, wallet.catalog)
    await ensure_groups(rt)
    wallets = await _ledger_wallets(rt)
    frozen = {r["user_id"] for r in await rt.pool.fetch(
        """SELECT DISTINCT t.user_id FROM ledger_tx t
           LEFT JOIN wallet_settings w ON w.user_id = t.user_id
           WHERE t.kind = 'reverse' AND t.shortfall > 0
             AND (w.unfrozen_at IS NULL OR t.ts > w.unfrozen_at)""")}
    day = int(time.time()) // 86400
    day_start = dt.datetime.fromtimestamp(day * 86400, dt.UTC)
    # One pass over ledger_tx for both per-user figures. The balance pushes' version
    # (lua/lib/balance_push.lua): each change counted one and wrote at least one ledger row, so
    # the row count keeps versions increasing across the restore. Today's spending: only users
    # with a gift today (the sum is NULL otherwise), as `day`/`day_spent` are written only then.
    per_user = await rt.pool.fetch(
        """SELECT user_id, count(*) AS n,
                  sum(coins) FILTER (WHERE kind = 'gift' AND ts >= $1) AS spent
           FROM ledger_tx GROUP BY user_id""", day_start)
    versions = {r["user_id"]: int(r["n"]) for r in per_user}
    spent = {r["user_id"]: int(r["spent"]) for r in per_user if r["spent"] is not None}
    limits = {r["user_id"]: int(r["daily_limit"]) for r in await rt.pool.fetch(
        "SELECT user_id, daily_limit FROM wallet_settings WHERE daily_limit > 0")}
    for user in limits.keys() - wallets.keys():
        wallets[user] = (0, 0, 0)
    items = sorted(wallets.items())
    for i in range(0, len(items), _CHUNK):
        async with rt.redis.pipeline(transaction=False) as pipe:
            for user, (coins, diamonds, carry) in items[i : i + _CHUNK]:
                fields: dict[str, int | str] = {"coins": coins, "diamonds": diamonds,
                                                "carry": carry, "frozen": int(user in frozen),
                                                "bv": versions.get(user, 0)}
                if user in spent:
                    fields |= {"day": str(day), "day_spent": spent[user]}
                if user in limits:
                    fields["daily_limit"] = limits[user]
                pipe.hset(k.wallet(user), mapping=fields)
                pipe.sadd(k.wallets_index(k.shard_of(user)), user)
            await pipe.execute()
    records = await _restore_records(rt)
    return RebuildReport(len(wallets), records)


async def _restore_records(rt: Runtime) -> int:
    k, now = rt.keys, time.time()
    since = dt.datetime.fromtimestamp(now - TX_TTL_S, dt.UTC)
    count = 0
    async with rt.pool.acquire() as conn, conn.transaction():
        cursor = conn.cursor(
            """SELECT kind, user_id, counterparty, ref, coins, diamonds, balance_after, shortfall,
                      room, gift, count, combo, ts, stream_ms FROM ledger_tx
               WHERE kind NOT IN ('gift', 'credit') OR ts > $1""", since)
        batch: list[tuple[str, str, int | None]] = []
        async for r in cursor:
            batch.append(_record(k, r, now))
            if len(batch) >= _CHUNK:
                count += await _write_records(rt, batch)
                batch.clear()
        count += await _write_records(rt, batch)
    return count


def _record(k: Keys, r: asyncpg.Record, now: float) -> tuple[str, str, int | None]:
    """The idempotency record a script wrote for this transaction (same format)."""
    get = r.__getitem__
    kind, user, ref, other = get("kind"), get("user_id"), get("ref"), get("counterparty") or ""
    bal, coins = get("balance_after") or 0, get("coins")
    ttl = max(1, int(TX_TTL_S - (now - get("ts").timestamp())))
    if kind == "gift":
        fp = f"{get('room')} {get('gift')} {get('count')} {get('combo') or ''}"
        at = "" if get("stream_ms") is None else f"@{get('stream_ms')} "  # spend.lua's format
        return k.tx(user, ref), f"{bal} {coins} {fp} {at}{other}", ttl
    if kind == "credit":
        return k.tx(user, f"c:{other}:{ref}"), str(get("diamonds")), ttl
    if kind in ("purchase", "grant"):
        tag = "p" if kind == "purchase" else "a"
        return k.tx(user, f"{tag}:{ref}"), f"{bal} {kind} {coins} {other}", None
    if kind == "reverse":
        return k.tx(user, f"r:{ref}"), f"{bal} {coins} {get('shortfall') or 0}", None
    return k.tx(user, f"d:{ref}"), f"{bal} {get('diamonds')}", None


async def _write_records(rt: Runtime, batch: list[tuple[str, str, int | None]]) -> int:
    if not batch:
        return 0
    async with rt.redis.pipeline(transaction=False) as pipe:
        for key, value, ttl in batch:
            pipe.set(key, value, ex=ttl)
        await pipe.execute()
    return len(batch)
