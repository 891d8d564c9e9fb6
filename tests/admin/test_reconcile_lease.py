"""The operator view's reconcile lease: a run whose process was SIGKILLed (no clean-up ran) is
shown as abandoned, and the next run may start, once its short lease lapses (not after minutes)."""

from __future__ import annotations

import asyncio
import json
import signal

import asyncpg
import httpx
import pytest

from server.auth import TokenIssuer
from server.config import Config
from server.runtime import Runtime
from server.web.admin.reconcile import current_result, start_reconcile
from tests.support.servers import subprocess_server

pytestmark = pytest.mark.slow

async def _renewed(rt: Runtime) -> int:
    """Until the lease's TTL goes up (its holder renewed it) or the lease is gone."""
    first = await rt.redis.pttl(rt.keys.reconcile_lock())
    while True:
        ttl = int(await rt.redis.pttl(rt.keys.reconcile_lock()))
        if not 0 < ttl <= first:
            return ttl
        await asyncio.sleep(ttl / 1000 / 4)  # a renewal is due within the lease's life


async def _lapsed(rt: Runtime) -> None:
    """Until Redis has dropped the lease: what is under test is its expiry, so the test waits
    for the time itself (the lease's remaining TTL), not for a guessed delay."""
    while True:
        ttl = int(await rt.redis.pttl(rt.keys.reconcile_lock()))
        if ttl < 0:
            return
        await asyncio.sleep(ttl / 1000)


async def test_a_killed_run_is_shown_abandoned_and_the_next_run_may_start(
    config: Config, runtime: Runtime, pool: asyncpg.Pool, issuer: TokenIssuer
) -> None:
    rt, headers = runtime, {"authorization": f"Bearer {issuer.mint('ops', 'admin')}"}
    async with subprocess_server(config) as child, pool.acquire() as conn:
        # The ledger locked: the child's run waits on Postgres, so it is mid-run when killed.
        lock = conn.transaction()
        await lock.start()
        try:
            await conn.execute("LOCK TABLE ledger_tx, ledger_entries IN ACCESS EXCLUSIVE MODE")
            async with httpx.AsyncClient(base_url=child.base_url) as http:
                r = await http.post("/api/admin/reconcile", headers=headers)
            assert r.status_code == 202 and r.json()["started"] is True, r.text
            assert await _renewed(rt) > 0  # the live run keeps its lease...
            result = await current_result(rt)
            assert result is not None and result["status"] == "running"
            started, _ = await start_reconcile(rt, "ops2", set())
            assert not started  # ...and with it, the only run
            assert child.process is not None
            child.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(child.process.wait, 30)
        finally:
            await lock.rollback()
    await _lapsed(rt)  # nobody renews it now
    result = await current_result(rt)
    assert result is not None and result["status"] == "failed"
    assert "abandoned" in result["error"]
    tasks: set[asyncio.Task[None]] = set()
    started, _ = await start_reconcile(rt, "ops2", tasks)
    assert started
    await asyncio.gather(*tasks)
    stored = json.loads(await rt.redis.get(rt.keys.reconcile_result()))
    assert (stored["status"], stored["by"]) == ("agree", "ops2")
    assert await rt.redis.exists(rt.keys.reconcile_lock()) == 0  # released when it finished
