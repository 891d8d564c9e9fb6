"""Spends: atomicity under concurrency (M1), idempotency (M2), refusals that change nothing (S2)."""

from __future__ import annotations

import asyncio

from server import streams
from server.flusher import Flusher
from server.runtime import Runtime
from server.wallet import SpendRequest, Wallet


async def _fund(wallet: Wallet, user: str, coins: int) -> None:
    res = await wallet.grant(user, coins, f"fund-{user}-{coins}", "admin")
    assert res.ok, res


async def test_a_gift_debits_the_viewer_and_credits_the_creator(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    await _fund(wallet, "alice", 1000)
    res = await wallet.spend(SpendRequest("alice", live_room, "corgi", 2, "tx-1"))
    assert (res.ok, res.balance, res.coins, res.creator, res.duplicate) == (
        True, 1000 - 598, 598, "creator1", False)
    assert res.gift_name == "Corgi" and not res.streakable
    assert (await wallet.state("creator1")).diamonds == 598
    await flusher.drain()
    rows = await runtime.pool.fetch("SELECT kind, coins, diamonds FROM ledger_tx ORDER BY id")
    assert sorted(tuple(r) for r in rows) == sorted(
        [("grant", 1000, 0), ("gift", 598, 0), ("credit", 598, 598)])
