"""Wallet fixtures: a started script runner, the wallet with its catalog published, a flusher,
a live room, and helpers to fund wallets and wait for the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.money import catalog, streams
from server.money.flusher import Flusher, ensure_groups
from server.money.wallet import Wallet
from server.runtime import Runtime
from server.storage.runners import script_runner
from server.storage.scripts import ScriptRunner


@pytest.fixture
async def runner(runtime: Runtime) -> AsyncIterator[ScriptRunner]:
    r = script_runner(runtime.redis)  # the cluster runner on a cluster (both_modes)
    await r.load()
    r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def wallet(runtime: Runtime, runner: ScriptRunner) -> Wallet:
    w = Wallet(runtime, runner)
    await catalog.publish(runtime.redis, runtime.keys, w.catalog)
    await ensure_groups(runtime)
    runtime.components["wallet"] = w
    return w


@pytest.fixture
async def flusher(runtime: Runtime, wallet: Wallet) -> AsyncIterator[Flusher]:
    """A flusher that is not running: tests call `drain()` to flush deterministically."""
    f = Flusher(runtime, wallet)
    try:
        yield f
    finally:
        await f.stop()


@pytest.fixture
async def live_room(runtime: Runtime) -> str:
    await streams.go_live(runtime, "room1", "creator1", "a test stream")
    return "room1"
