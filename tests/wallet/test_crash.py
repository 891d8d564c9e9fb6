"""M3 under failure: the flusher SIGKILLed mid-batch, and Postgres unreachable under load.
Afterwards reconcile finds no difference and the ledger holds every accepted gift exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from server.config import Config
from server.money.flusher import GROUP, Flusher
from server.money.reconcile import reconcile
from server.money.wallet import Wallet
from server.runtime import Runtime
from tests.wallet.support import PgProxy, SpendLoad
from tests.wallet.test_rebuild import cli
from tests.wallet.test_spend import fund

pytestmark = pytest.mark.slow
USERS = [f"fan{i}" for i in range(16)]


async def _fund_all(wallet: Wallet) -> None:
    for user in USERS:
        await fund(wallet, user, 1_000_000)


async def _ledger_gifts(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT user_id, ref FROM ledger_tx WHERE kind = 'gift'")
    return [(r["user_id"], r["ref"]) for r in rows]


async def _poll(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    """Wait for a condition on an external process (a poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)  # polling a child process's effect on Postgres


def _start_flusher(config: Config) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server", "flush"],
        env={**os.environ, **config.to_env()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    await asyncio.to_thread(proc.wait, 30)


async def _pending(runtime: Runtime) -> int:
    return sum([(await runtime.redis.xpending(s, GROUP))["pending"]
                for s in runtime.keys.ledger_streams()])


async def test_flusher_sigkilled_mid_batch_and_restarted_loses_and_duplicates_nothing(
    runtime: Runtime, wallet: Wallet, live_room: str, config: Config
) -> None:
    cfg = dataclasses.replace(config, flush_claim_idle_ms=500, flush_batch=50)
    await _fund_all(wallet)
    first = _start_flusher(cfg)
    second: subprocess.Popen[bytes] | None = None
    lock = await asyncpg.connect(config.database_url,
                                 server_settings={"search_path": config.db_schema})
    try:
        async with SpendLoad(wallet, live_room, USERS) as load:
            await load.wait_accepted(200)
            # Hold the ledger table so the flusher's INSERT waits inside its transaction: the
            # batch is read, COPYed into staging, not committed, not acknowledged.
            tx = lock.transaction()
            await tx.start()
            await lock.execute("LOCK TABLE ledger_tx IN EXCLUSIVE MODE")

            async def flusher_waits_on_the_lock() -> bool:
                # Another connection: a transaction sees one snapshot of pg_stat_activity.
                return bool(await runtime.pool.fetchval(
                    """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                       AND application_name = 'giftwire-flusher'"""))

            await _poll("flusher blocked mid-batch", flusher_waits_on_the_lock)
            assert await _pending(runtime) > 0
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
            await tx.rollback()
            mid = len(load.accepted)
            second = _start_flusher(cfg)
            await load.wait_accepted(mid + 300)
        accepted = load.accepted
        assert load.refused == []

        async def all_flushed() -> bool:
            return len(await _ledger_gifts(runtime.pool)) >= len(accepted)

        await _poll("the restarted flusher catches up", all_flushed)
        await _stop(second)
        code, out = await cli(cfg, "reconcile")
        assert code == 0, out
        gifts = await _ledger_gifts(runtime.pool)
        assert len(gifts) == len(set(gifts))  # no duplicate
        assert set(gifts) == accepted  # no gap, nothing extra
    finally:
        await lock.close()
        for proc in (first, second):
            if proc is not None:
                await _stop(proc, signal.SIGKILL)


async def test_postgres_unreachable_under_load_then_back_loses_and_duplicates_nothing(
    runtime: Runtime, wallet: Wallet, live_room: str
) -> None:
    assert runtime.config.database_url
    await _fund_all(wallet)
    proxy = PgProxy(runtime.config.database_url)
    await proxy.start()
    flusher = Flusher(runtime, wallet, database_url=proxy.dsn)
    flusher.start()
    try:
        async with SpendLoad(wallet, live_room, USERS) as load:
            await load.wait_accepted(200)
            await proxy.cut()
            await asyncio.wait_for(flusher.wait_failing(), 30)
            cut_at = len(load.accepted)
            await load.wait_accepted(cut_at + 500)
            # Everything accepted while Postgres was away is held in the streams.
            assert await flusher.report_lag() >= 500
            assert len(await _ledger_gifts(runtime.pool)) <= cut_at
            await proxy.restore()
        await asyncio.wait_for(flusher.wait_caught_up(), 60)
        assert flusher.failures > 0
        assert await reconcile(runtime, None) == []
        gifts = await _ledger_gifts(runtime.pool)
        assert len(gifts) == len(set(gifts))
        assert set(gifts) == load.accepted
        assert load.refused == []
    finally:
        await flusher.stop()
        await proxy.cut()
