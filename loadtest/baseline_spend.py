"""Baseline: the raw rate of the spend script called straight from Python, one call at a time.

`CONCURRENCY` tasks each await `EVALSHA spend` in a loop (no pipelining, no batching) with the
server's own Redis client factory (`server.runtime.redis_client`: redis-py + hiredis) on uvloop,
in a process of its own, against the run's Redis under a throw-away key prefix. The keys and
arguments are exactly the wallet's (`server/money/wallet.py`), so Redis does the same work per call.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from multiprocessing.connection import Connection
from typing import Any

CONCURRENCY = 100
USERS = 100


def main(redis_url: str, duration_s: float, pipe: Connection) -> None:
    try:
        import uvloop

        result = uvloop.run(_measure(redis_url, duration_s))
    except ImportError:
        result = asyncio.run(_measure(redis_url, duration_s))
    pipe.send(result)


async def _measure(redis_url: str, duration_s: float) -> dict[str, Any]:
    import psutil

    from server.runtime import delete_prefix, redis_client
    from server.storage.keys import Keys
    from server.storage.scripts import load_scripts

    keys = Keys(f"ltb{secrets.token_hex(3)}:", 16)
    redis = redis_client(redis_url, max_connections=CONCURRENCY + 8)
    script = load_scripts()["spend"]
    await redis.script_load(script.source)
    room, creator = "baseline-room", "baseline-creator"
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(keys.wallet_shards):
            pipe.hset(keys.catalog(shard), "rose", "1 1")
            pipe.hset(keys.live_rooms(shard), room, creator)
            pipe.hset(keys.blocks(shard), "", "1")  # loaded, no blocks (server/money/blockgate.py)
        users = [f"b{i}" for i in range(USERS)]
        for user in users:
            pipe.hset(keys.wallet(user), "coins", 10**12)
        await pipe.execute()
    calls = 0
    latencies: list[float] = []
    end = 0.0

    async def spender(i: int) -> None:
        nonlocal calls
        user = users[i % USERS]
        shard = keys.shard_of(user)
        fixed = [keys.wallet(user), "", keys.ledger_stream(shard), keys.catalog(shard),
                 keys.live_rooms(shard), keys.blocks(shard), keys.balance_channel(user)]
        n = 0
        while time.monotonic() < end:
            tx = f"t{i}-{n}"
            fixed[1] = keys.tx(user, tx)
            started = time.monotonic()
            await redis.evalsha(script.sha, 7, *fixed, user, tx, room, "rose", 1, "", 0, 600)
            latencies.append(time.monotonic() - started)
            n += 1
            calls += 1

    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    started = time.monotonic()
    end = started + duration_s
    await asyncio.gather(*(spender(i) for i in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    # Clean up the throw-away prefix (ledger streams included).
    await delete_prefix(redis, keys.prefix)
    await redis.aclose()
    from loadtest.stats import summary_ms

    return {
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "concurrency": CONCURRENCY,
        "client_cores": round(cpu / elapsed, 3),
        "call_ms": summary_ms(latencies),
    }


def measure_spend(redis_url: str, duration_s: float = 5.0) -> dict[str, Any]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=main, args=(redis_url, duration_s, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(duration_s + 60):
            raise RuntimeError("the evalsha baseline did not finish in time")
        result: dict[str, Any] = parent.recv()
        return result
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
