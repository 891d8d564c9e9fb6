"""Every wallet script keeps all its KEYS in one Redis Cluster slot (survives Cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from server.auth import AUTH_SCRIPTS
from server.money.flusher import Flusher
from server.money.wallet import WALLET_SCRIPTS, SpendRequest, Wallet
from server.runtime import Runtime
from server.storage.keys import cluster_slot
from server.storage.scripts import LUA_DIR, ScriptRunner

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def test_every_wallet_script_touches_one_slot_and_every_one_is_exercised(
    wallet: Wallet, runner: ScriptRunner, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    calls: list[tuple[str, tuple[str, ...]]] = []

    def observe(name: str, keys: Sequence[str]) -> None:
        calls.append((name, tuple(keys)))

    runner.observer = observe
    # Many users so that viewer and creator wallets land on many different shards.
    for i in range(40):
        user = f"user{i}"
        assert (await wallet.grant(user, 1000, f"g{i}", "admin")).ok
        assert (await wallet.purchase(user, "coins_70", f"rcpt{i}")).ok
        assert (await wallet.spend(SpendRequest(user, live_room, "rose", 1, f"s{i}"))).ok
        assert not (await wallet.spend(SpendRequest(user, "nowhere", "rose", 1, f"n{i}"))).ok
        combo = SpendRequest(user, live_room, "rose", 1, f"c{i}", combo=f"k{i}")
        assert (await wallet.spend(combo)).ok
        assert await wallet.close_combo(user, f"k{i}")
    wallet.start()  # background credits: several gifts per credit call
    try:
        results = await asyncio.gather(*(
            wallet.spend(SpendRequest(f"user{i}", live_room, "rose", 1, f"b{i}"))
            for i in range(40)
        ))
        assert all(r.ok for r in results)
        await wallet.settle_credits()
    finally:
        await wallet.stop()
    assert any(name == "credit" and len(keys) > 4 for name, keys in calls)
    # A spend whose process died before its credit: the flusher asks and credits.
    k, shard = runtime.keys, runtime.keys.shard_of("user1")
    await runner.call(
        "spend",
        [k.wallet("user1"), k.tx("user1", "lost"), k.ledger_stream(shard), k.catalog(shard),
         k.live_rooms(shard), k.blocks(shard), k.balance_channel("user1")],
        ["user1", "lost", live_room, "rose", 1, "", 0, 60],
    )
    await flusher.drain()  # the flusher's checks and credits go through the runner too
    assert any(name == "credited" for name, _ in calls)
    assert (await wallet.reverse("a:user0:g0", "admin")).ok
    await wallet.grant("creator1", 1, "c", "admin")
    assert (await wallet.redeem("creator1", 40, "payout1")).code == "out_of_range"
    assert (await wallet.state("creator1")).coins == 1

    exercised = {name for name, _ in calls}
    assert exercised == WALLET_SCRIPTS
    # Every script file is a wallet script (exercised here), a room script (exercised by
    # tests/hub/test_roomstate.py) or the token revocation lookup (one key; tests/wallet/
    # test_api.py): a new script that none of them drives fails here.
    files = {p.stem for p in LUA_DIR.glob("*.lua")}
    assert files - WALLET_SCRIPTS - AUTH_SCRIPTS == {p.stem for p in LUA_DIR.glob("room_*.lua")}
    assert files >= WALLET_SCRIPTS
    for name, keys in calls:
        slots = {cluster_slot(k) for k in keys}
        assert len(slots) == 1, f"{name} touches slots {slots} with keys {keys}"
    assert len({cluster_slot(keys[0]) for _, keys in calls}) > 4  # really spread over shards
