"""The money subsystem's start-up: the wallet, the catalog it prices from, the ledger flusher."""

from __future__ import annotations

import contextlib
import logging

from server.money import catalog
from server.money.flusher import Flusher, ensure_groups
from server.money.wallet import Wallet
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner

log = logging.getLogger("giftwire.flusher")


async def start(rt: Runtime, runner: ScriptRunner, stack: contextlib.AsyncExitStack) -> Wallet:
    """App start-up: publish the catalog to every shard, attach the wallet, start the flusher."""
    wallet = Wallet(rt, runner)
    await catalog.publish(rt.redis, rt.keys, wallet.catalog)
    await ensure_groups(rt)
    wallet.start()
    stack.push_async_callback(wallet.stop)
    rt.components["wallet"] = wallet
    if rt.config.run_flusher:
        flusher = Flusher(rt, wallet)
        flusher.start()
        # Its consumer name in the ledger group: unique per process (host, pid, random).
        log.info("ledger flusher %s started", flusher.name)
        stack.push_async_callback(flusher.stop)
        rt.components["flusher"] = flusher
    return wallet
