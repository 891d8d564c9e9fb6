"""Rebuild and reconcile (M4): Redis restored from the ledger alone; differences are reported."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid

import pytest

from server.config import Config
from server.money import catalog
from server.money.flusher import Flusher
from server.money.wallet import SpendRequest, Wallet
from server.runtime import Runtime, delete_prefix, open_runtime
from server.storage.runners import script_runner
from server.storage.scripts import ScriptRunner
from tests.wallet.test_spend import fund

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def cli(config: Config, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args,
        env={**os.environ, **config.to_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _history(wallet: Wallet, room: str) -> list[str]:
    """A varied history; returns the users involved."""
    users = [f"u{i}" for i in range(12)]
    for i, user in enumerate(users):
        await fund(wallet, user, 100 + i)
        assert (await wallet.purchase(user, "coins_70", f"rc-{i}")).ok
        for j in range(i % 4):
            assert (await wallet.spend(SpendRequest(user, room, "finger_heart", j + 1,
                                                    f"{user}-t{j}"))).ok
    return [*users, "creator1"]


async def _states(wallet: Wallet, users: list[str]) -> dict[str, object]:
    return {u: dataclasses.astuple(await wallet.state(u)) for u in users}


async def test_rebuild_into_an_empty_redis_gives_back_every_balance(
    runtime: Runtime, runner: ScriptRunner, live_room: str, config: Config
) -> None:
    # A creator share of 2/3 leaves rounding carries to restore too.
    rt = dataclasses.replace(runtime, config=dataclasses.replace(
        runtime.config, diamonds_per_coin_num=2, diamonds_per_coin_den=3))
    wallet = Wallet(rt, runner)
    await catalog.publish(rt.redis, rt.keys, wallet.catalog)
    users = await _history(wallet, live_room)
    await wallet.set_daily_limit("u1", 500)
    while (await wallet.state("creator1")).carry == 0:
        n = len(users)
        users.append(f"extra{n}")
        await fund(wallet, users[-1], 1)
        assert (await wallet.spend(SpendRequest(users[-1], live_room, "rose", 1, "c"))).ok
    flusher = Flusher(rt, wallet)
    try:
        await flusher.drain()
        # A chargeback the wallet cannot cover: frozen, never negative.
        assert (await wallet.spend(SpendRequest("u5", live_room, "doughnut", 5, "spent"))).ok
        reversal = await wallet.reverse("p:u5:rc-5", "admin")
        assert (reversal.ok, reversal.balance, reversal.shortfall) == (True, 0, 70 - 20)
        # Another one, settled by an administrator: rebuild must not freeze it again.
        assert (await wallet.spend(SpendRequest("u7", live_room, "hand_hearts", 1, "all"))).ok
        assert (await wallet.reverse("p:u7:rc-7", "admin")).shortfall > 0
        assert (await wallet.state("u7")).frozen
        await wallet.unfreeze("u7")
        await flusher.drain()
    finally:
        await flusher.stop()
    before = await _states(wallet, users)
    assert before["u5"] == ("u5", 0, 0, 0, True, 0)
    assert before["u1"][5] == 500
    assert not before["u7"][4]
    assert before["creator1"][3] != 0  # a carry exists
    versions = {u: int(await runtime.redis.hget(runtime.keys.wallet(u), "bv") or 0)
                for u in users}
    assert min(versions.values()) > 0

    fresh = dataclasses.replace(config, key_prefix=f"t{uuid.uuid4().hex[:10]}:")
    try:
        code, out = await cli(fresh, "rebuild")
        assert code == 0, out
        code, out = await cli(fresh, "rebuild")
        assert code == 1 and "already holds wallets" in out
        async with open_runtime(fresh, migrate=False) as rt2:
            runner2 = script_runner(rt2.redis)
            wallet2 = Wallet(rt2, runner2)
            assert await _states(wallet2, users) == before
            # Balance pushes' versions never go back (docs/protocol.md, `balance`).
            for u in users:
                assert int(await rt2.redis.hget(rt2.keys.wallet(u), "bv")) >= versions[u], u
            # Idempotency survived: old ids return their first results and change nothing.
            again = await wallet2.spend(SpendRequest("u3", live_room, "finger_heart", 3, "u3-t2"))
            assert (again.ok, again.duplicate, again.balance) == (True, True,
                                                                  before["u3"][1])
            # With the debit's time, the ledger's (a battle judges a retried gift by it).
            assert again.at_ms == await runtime.pool.fetchval(
                "SELECT stream_ms FROM ledger_tx WHERE kind = 'gift' AND ref = 'u3-t2'") > 0
            assert (await wallet2.purchase("u7", "coins_70", "rc-7")).duplicate
            assert (await wallet2.reverse("p:u5:rc-5", "admin")).duplicate
            assert await _states(wallet2, users) == before
    finally:
        async with open_runtime(fresh, migrate=False) as rt2:
            await delete_prefix(rt2.redis, fresh.key_prefix)


async def test_reconcile_reports_nothing_when_in_step_and_each_difference_otherwise(
    wallet: Wallet, live_room: str, runtime: Runtime, config: Config
) -> None:
    await _history(wallet, live_room)  # left in the streams: reconcile drains them first
    code, out = await cli(config, "reconcile")
    assert code == 0, out
    assert "0 difference(s)" in out
    await runtime.redis.hincrby(runtime.keys.wallet("u2"), "coins", 5)
    await runtime.redis.hincrby(runtime.keys.wallet("creator1"), "diamonds", -1)
    code, out = await cli(config, "reconcile")
    assert code == 1
    assert "u2: coins: redis=162 ledger=157" in out
    assert "creator1: diamonds:" in out
    assert "2 difference(s)" in out
