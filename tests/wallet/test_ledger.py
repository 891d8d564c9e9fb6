"""The ledger in Postgres: double entry, exactly once on replay, consumer-group hand-over, trim."""

from __future__ import annotations

import asyncio

import pytest

from server.money import flusher as flusher_mod
from server.money import ledger
from server.money.flusher import GROUP, Flusher
from server.money.reconcile import reconcile
from server.money.wallet import TX_TTL_S, SpendRequest, Wallet
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner
from tests.wallet.support import SpendLoad
from tests.wallet.test_spend import fund, stream_total

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def _every_kind(wallet: Wallet, room: str) -> None:
    await fund(wallet, "v1", 5000)
    assert (await wallet.purchase("v1", "coins_350", "r-1")).ok
    for i in range(5):
        assert (await wallet.spend(SpendRequest("v1", room, "doughnut", 2, f"t{i}"))).ok
    await fund(wallet, "creator1", 2000)
    # Gifting one's own room is refused before any debit: it records nothing in the ledger.
    refused = await wallet.spend(SpendRequest("creator1", room, "rose", 1, "self"))
    assert (refused.ok, refused.code, refused.balance) == (False, "self_gift", 2000)
    assert (await wallet.redeem("creator1", 300, "payout-1")).code == "out_of_range"
    assert (await wallet.spend(SpendRequest("v1", room, "money_gun", 1, "big"))).ok


async def test_every_transaction_sums_to_zero_per_currency(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    await _every_kind(wallet, live_room)
    assert (await wallet.state("creator1")).diamonds == 800
    assert (await wallet.spend(SpendRequest("v1", live_room, "money_gun", 1, "big2"))).ok
    assert (await wallet.redeem("creator1", 1000, "p-3")).ok
    await flusher.drain()  # a reversal finds its original in the ledger
    assert (await wallet.reverse("p:v1:r-1", "admin")).ok
    rt = runtime
    await flusher.drain()
    kinds = {r[0] for r in await rt.pool.fetch("SELECT DISTINCT kind FROM ledger_tx")}
    assert kinds == set(ledger.KINDS)
    unbalanced = await rt.pool.fetch(
        """SELECT tx_id, currency FROM ledger_entries GROUP BY tx_id, currency
           HAVING sum(amount) <> 0""")
    assert unbalanced == []
    without_entries = await rt.pool.fetchval(
        """SELECT count(*) FROM ledger_tx t WHERE NOT EXISTS
           (SELECT 1 FROM ledger_entries e WHERE e.tx_id = t.id)""")
    assert without_entries == 0
    total = await rt.pool.fetch(
        "SELECT currency, sum(amount) FROM ledger_entries GROUP BY currency")
    assert {r[1] for r in total} == {0}


async def test_replaying_a_written_batch_inserts_nothing_twice(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    await fund(wallet, "v2", 100)
    for i in range(10):
        assert (await wallet.spend(SpendRequest("v2", live_room, "rose", 1, f"t{i}"))).ok
    batch = []
    for shard, stream in enumerate(runtime.keys.ledger_streams()):
        for sid, fields in await runtime.redis.xrange(stream):
            batch.append(ledger.parse_entry(shard, sid.decode(), fields))
    assert len(batch) == 1 + 10 + 10  # grant, gifts, credits
    async with runtime.pool.acquire() as conn:
        await ledger.prepare(conn)
        assert (await ledger.write_batch(conn, batch))[0] == 21
        # As after a crash between COMMIT and XACK, and with the batch holding itself twice.
        assert (await ledger.write_batch(conn, batch + batch))[0] == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM ledger_tx") == 21
    assert await runtime.pool.fetchval("SELECT count(*) FROM ledger_entries") == 42


async def test_entries_pending_on_a_dead_consumer_are_kept_then_claimed(
    wallet: Wallet, live_room: str, runtime: Runtime, flusher: Flusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await fund(wallet, "v3", 100)
    r = runtime.redis
    stream = runtime.keys.ledger_stream(runtime.keys.shard_of("v3"))
    # A consumer that reads and dies without acknowledging.
    taken = await r.xreadgroup(GROUP, "dead-consumer", {stream: ">"}, count=10)
    dead_ids = [sid for sid, _ in taken[0][1]]
    assert len(dead_ids) == 1
    for i in range(5):
        assert (await wallet.spend(SpendRequest("v3", live_room, "rose", 1, f"t{i}"))).ok
    await flusher.drain()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_tx WHERE kind = 'grant'") == 0
    # The trim kept the unacknowledged entry, and the metric counts it.
    assert [sid for sid, _ in await r.xrange(stream, min=dead_ids[0], max=dead_ids[0])] == dead_ids
    assert await flusher.report_lag() >= 1
    assert (runtime.metrics.registry.get_sample_value("giftwire_flusher_lag") or 0) >= 1
    consumers = {c["name"] for c in await r.xinfo_consumers(stream, GROUP)}
    assert b"dead-consumer" in consumers
    await flusher.drain(claim_all=True)
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_tx WHERE kind = 'grant'") == 1
    # Nothing pending, but it read moments ago: kept (it may be alive and idle).
    assert b"dead-consumer" in {c["name"] for c in await r.xinfo_consumers(stream, GROUP)}
    monkeypatch.setattr(flusher_mod, "CONSUMER_FORGET_MS", -1)  # "an hour" has passed
    await flusher.drain(claim_all=True)
    assert b"dead-consumer" not in {c["name"] for c in await r.xinfo_consumers(stream, GROUP)}
    assert (await r.xpending(stream, GROUP))["pending"] == 0
    assert await stream_total(runtime) == 0
    assert await flusher.report_lag() == 0


async def test_history_pages_newest_first(
    wallet: Wallet, live_room: str, runtime: Runtime, flusher: Flusher
) -> None:
    await fund(wallet, "v4", 100)
    for i in range(7):
        assert (await wallet.spend(SpendRequest("v4", live_room, "rose", 1, f"t{i}"))).ok
    await flusher.drain()
    seen, before = [], None
    while True:
        page = await ledger.history(runtime.pool, "v4", before=before, limit=3)
        seen += page
        if len(page) < 3:
            break
        before = page[-1].id
    assert [t.kind for t in seen] == ["gift"] * 7 + ["grant"]
    assert [t.ref for t in seen[:7]] == [f"t{i}" for i in reversed(range(7))]
    assert [t.balance_after for t in seen[:7]] == list(range(93, 100))


async def test_a_spend_whose_credit_was_lost_is_credited_by_the_flusher(
    wallet: Wallet, runner: ScriptRunner, live_room: str, runtime: Runtime, flusher: Flusher
) -> None:
    await fund(wallet, "v5", 100)
    k, shard = runtime.keys, runtime.keys.shard_of("v5")
    # The spend script ran, then the process died before the credit (no Wallet.spend here).
    await wallet.blocks.load()  # what Wallet.spend does first on a fresh Redis
    status, balance, coins, creator, _entry = await runner.call(
        "spend",
        [k.wallet("v5"), k.tx("v5", "lost"), k.ledger_stream(shard), k.catalog(shard),
         k.live_rooms(shard), k.blocks(shard), k.balance_channel("v5")],
        ["v5", "lost", live_room, "doughnut", 2, "", 0, TX_TTL_S],
    )
    assert (status, balance, coins, creator) == (b"ok", 40, 60, b"creator1")
    assert (await wallet.state("creator1")).diamonds == 0
    await flusher.drain()
    assert (await wallet.state("creator1")).diamonds == 60
    assert await reconcile(runtime, flusher) == []
    assert await runtime.pool.fetchval(
        "SELECT diamonds FROM ledger_tx WHERE tx_key = 'c:v5:lost'") == 60


async def test_reconcile_reports_a_tampered_ledger(
    wallet: Wallet, live_room: str, runtime: Runtime, flusher: Flusher
) -> None:
    await fund(wallet, "v6", 100)
    assert (await wallet.spend(SpendRequest("v6", live_room, "rose", 3, "t"))).ok
    assert await reconcile(runtime, flusher) == []
    await runtime.pool.execute(
        """DELETE FROM ledger_entries WHERE account = 'platform:revenue' AND tx_id =
           (SELECT id FROM ledger_tx WHERE tx_key = 'g:v6:t')""")
    found = {(d.subject, d.what) for d in await reconcile(runtime, flusher)}
    assert found == {("g:v6:t", "unbalanced coin")}
    await runtime.pool.execute(
        "DELETE FROM ledger_entries WHERE tx_id = (SELECT id FROM ledger_tx WHERE tx_key = $1)",
        "g:v6:t")
    found = {(d.subject, d.what) for d in await reconcile(runtime, flusher)}
    assert found == {("v6", "coins"), ("g:v6:t", "missing_entries")}


async def test_several_flushers_share_the_streams_and_write_each_entry_once(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    users = [f"w{i}" for i in range(12)]
    for user in users:
        await fund(wallet, user, 10_000)
    flushers = [Flusher(runtime, wallet) for _ in range(3)]
    for f in flushers:
        f.start()
    try:
        async with SpendLoad(wallet, live_room, users) as load:
            await load.wait_accepted(1500)
        await asyncio.gather(*(asyncio.wait_for(f.wait_caught_up(), 60) for f in flushers))
    finally:
        for f in flushers:
            await f.stop()
    gifts = await runtime.pool.fetch(
        "SELECT user_id, ref FROM ledger_tx WHERE kind = 'gift'")
    assert sorted((r[0], r[1]) for r in gifts) == sorted(load.accepted)
    assert sum(f.written for f in flushers) == await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_tx")
    assert sum(f.written > 0 for f in flushers) >= 2  # the work was shared
    assert await stream_total(runtime) == 0
    assert await reconcile(runtime, None) == []
