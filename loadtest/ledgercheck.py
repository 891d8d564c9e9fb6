"""The money check at the end of a run: Redis debits == Postgres ledger == what clients were told.

- Redis: every sender started with a known grant, so its debits are `grant - coins now`.
- Postgres: the `gift` rows of the run's users in `ledger_tx` once the flusher caught up (the
  ledger streams are empty: `XLEN` of every shard stream is the flusher's lag).
- Clients: the coins of every acknowledged gift (price from the catalog, counts of 1).
The three must agree, and every accepted transaction must be one ledger row (M3).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from server.storage.keys import Keys


@dataclass
class LedgerCheck:
    redis_total: int | None = None
    postgres_total: int | None = None
    postgres_rows: int | None = None
    client_total: int | None = None
    client_accepted: int | None = None
    consistent: bool = False
    flusher_max_lag: int = 0
    flusher_final_lag: int | None = None
    catch_up_s: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


async def flusher_lag(redis: Redis, keys: Keys) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for stream in keys.ledger_streams():
            pipe.xlen(stream)
        return int(sum(await pipe.execute()))


async def redis_debits(redis: Redis, keys: Keys, grants: dict[str, int]) -> int:
    users = list(grants)
    total = 0
    for i in range(0, len(users), 500):
        chunk = users[i:i + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for user in chunk:
                pipe.hget(keys.wallet(user), "coins")
            coins = await pipe.execute()
        total += sum(grants[u] - int(c or 0) for u, c in zip(chunk, coins, strict=True))
    return total


async def postgres_gifts(dsn: str, schema: str, user_prefix: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(coins), 0)::bigint AS total FROM ledger_tx"
            " WHERE kind = 'gift' AND user_id LIKE $1",
            user_prefix + "%",
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["total"])


async def check(
    redis: Redis,
    keys: Keys,
    dsn: str,
    schema: str,
    user_prefix: str,
    grants: dict[str, int],
    client_total: int,
    client_accepted: int,
    max_lag: int,
    timeout_s: float,
) -> LedgerCheck:
    """Wait (bounded) for the flusher to empty the streams, then compare the three totals."""
    result = LedgerCheck(client_total=client_total, client_accepted=client_accepted,
                         flusher_max_lag=max_lag)
    started = time.monotonic()
    deadline = started + timeout_s
    lag = await flusher_lag(redis, keys)
    while lag > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the flusher is another process: poll its visible effect
        lag = await flusher_lag(redis, keys)
    result.flusher_final_lag = lag
    result.flusher_max_lag = max(max_lag, lag)
    if lag == 0:
        result.catch_up_s = round(time.monotonic() - started, 3)
    else:
        result.note = f"the flusher did not catch up within {timeout_s:.0f}s ({lag} entries left)"
    result.redis_total = await redis_debits(redis, keys, grants)
    result.postgres_rows, result.postgres_total = await postgres_gifts(dsn, schema, user_prefix)
    result.consistent = (
        lag == 0
        and result.redis_total == result.postgres_total == client_total
        and result.postgres_rows == client_accepted
    )
    if not result.consistent and not result.note:
        result.note = (
            f"redis {result.redis_total} / postgres {result.postgres_total} "
            f"({result.postgres_rows} rows) / clients {client_total} ({client_accepted} accepted)"
        )
    return result
