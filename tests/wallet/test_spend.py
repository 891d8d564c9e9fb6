"""Spends: atomicity under concurrency (M1), idempotency (M2), refusals that change nothing (S2)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.money import catalog, streams
from server.money.flusher import Flusher
from server.money.wallet import SpendRequest, Wallet
from server.runtime import Runtime, redis_client
from server.storage.runners import script_runner
from server.storage.scripts import ScriptRunner

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def fund(wallet: Wallet, user: str, coins: int) -> None:
    res = await wallet.grant(user, coins, f"fund-{user}-{coins}", "admin")
    assert res.ok, res


async def stream_total(rt: Runtime) -> int:
    return sum([await rt.redis.xlen(s) for s in rt.keys.ledger_streams()])


async def test_a_gift_debits_the_viewer_and_credits_the_creator(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    await fund(wallet, "alice", 1000)
    res = await wallet.spend(SpendRequest("alice", live_room, "corgi", 2, "tx-1"))
    assert (res.ok, res.balance, res.coins, res.creator, res.duplicate) == (
        True, 1000 - 598, 598, "creator1", False)
    assert res.gift_name == "Corgi" and not res.streakable
    assert (await wallet.state("creator1")).diamonds == 598
    await flusher.drain()
    rows = await runtime.pool.fetch("SELECT kind, coins, diamonds FROM ledger_tx ORDER BY id")
    assert sorted(tuple(r) for r in rows) == sorted(
        [("grant", 1000, 0), ("gift", 598, 0), ("credit", 598, 598)])


@pytest.fixture
async def runners(runtime: Runtime) -> AsyncIterator[list[ScriptRunner]]:
    """Four runners, each on its own Redis connection pool (four "server connections")."""
    assert runtime.config.redis_url
    clients: list[Redis] = [redis_client(runtime.config.redis_url, cluster=runtime.config.cluster)
                            for _ in range(4)]
    made = [script_runner(c) for c in clients]
    for r in made:
        r.start()
    try:
        yield made
    finally:
        for r in made:
            await r.stop()
        for c in clients:
            await c.aclose()


async def test_1000_concurrent_spends_against_500_coins_accept_exactly_500(
    wallet: Wallet, runners: list[ScriptRunner], live_room: str, flusher: Flusher,
    runtime: Runtime,
) -> None:
    await fund(wallet, "many", 500)
    # Started wallets credit creators in the background, batched per creator.
    wallets = [Wallet(runtime, r, wallet.catalog) for r in runners]
    for w in wallets:
        w.start()
    try:
        results = await asyncio.gather(*(
            wallets[i % 4].spend(SpendRequest("many", live_room, "rose", 1, f"t{i}"))
            for i in range(1000)
        ))
    finally:
        for w in wallets:
            await w.stop()  # settles the queued credits first
    accepted = [r for r in results if r.ok]
    assert len(accepted) == 500
    assert {r.code for r in results if not r.ok} == {"insufficient_funds"}
    assert all(r.balance >= 0 for r in results)
    assert sorted(r.balance for r in accepted) == list(range(500))  # each debit saw its own
    assert await wallet.balance("many") == 0
    await flusher.drain()
    gifts = await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_tx WHERE kind = 'gift' AND user_id = 'many'")
    assert gifts == 500
    assert await runtime.pool.fetchval(
        "SELECT sum(amount) FROM ledger_entries WHERE account = 'viewer:many'") == 0
    assert (await wallet.state("creator1")).diamonds == 500


async def test_one_tx_id_sent_20_times_at_once_is_debited_once_and_all_answers_agree(
    wallet: Wallet, runners: list[ScriptRunner], live_room: str, flusher: Flusher,
    runtime: Runtime,
) -> None:
    await fund(wallet, "dup", 1000)
    wallets = [Wallet(runtime, r, wallet.catalog) for r in runners]
    req = SpendRequest("dup", live_room, "doughnut", 3, "same-tx")
    results = await asyncio.gather(*(wallets[i % 4].spend(req) for i in range(20)))
    assert {(r.ok, r.balance, r.coins, r.creator) for r in results} == {
        (True, 910, 90, "creator1")}
    assert sum(not r.duplicate for r in results) == 1
    assert await wallet.balance("dup") == 910
    assert (await wallet.state("creator1")).diamonds == 90
    await flusher.drain()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_tx WHERE user_id = 'dup' AND kind = 'gift'") == 1


async def test_a_tx_id_reused_with_other_parameters_is_a_conflict_and_changes_nothing(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    await fund(wallet, "bob", 100)
    assert (await wallet.spend(SpendRequest("bob", live_room, "rose", 1, "x1"))).ok
    before = await stream_total(runtime)
    for changed in (
        SpendRequest("bob", live_room, "rose", 2, "x1"),
        SpendRequest("bob", live_room, "finger_heart", 1, "x1"),
        SpendRequest("bob", live_room, "rose", 1, "x1", combo="c1"),
    ):
        res = await wallet.spend(changed)
        assert (res.ok, res.code, res.balance) == (False, "tx_conflict", 99)
    assert await wallet.balance("bob") == 99
    assert await stream_total(runtime) == before


async def test_a_refused_spend_records_nothing_and_may_be_retried(
    wallet: Wallet, live_room: str
) -> None:
    req = SpendRequest("poor", live_room, "corgi", 1, "retry-me")
    first = await wallet.spend(req)
    assert (first.ok, first.code, first.balance) == (False, "insufficient_funds", 0)
    await fund(wallet, "poor", 300)
    second = await wallet.spend(req)
    assert (second.ok, second.duplicate, second.balance) == (True, False, 1)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"gift": "no_such_gift"}, "unknown_gift"),
        ({"room": "never-existed"}, "room_not_found"),
        ({"count": 0}, "out_of_range"),
        ({"count": -5}, "out_of_range"),
        ({"count": 1001}, "out_of_range"),
        ({"count": 2**63}, "out_of_range"),
        ({"tx": "bad{tag}"}, "invalid_value"),
        ({"tx": ""}, "invalid_value"),
        ({"gift": "corgi", "combo": "c1"}, "not_streakable"),
        ({"gift": "universe"}, "insufficient_funds"),
    ],
)
async def test_bad_spends_are_refused_with_their_code_and_change_nothing(
    wallet: Wallet, live_room: str, runtime: Runtime, flusher: Flusher,
    change: dict[str, object], code: str,
) -> None:
    await fund(wallet, "carol", 1000)
    await flusher.drain()
    rows_before = await runtime.pool.fetchval("SELECT count(*) FROM ledger_tx")
    req = dataclasses.replace(SpendRequest("carol", live_room, "rose", 1, "bad-1"), **change)
    res = await wallet.spend(req)
    assert (res.ok, res.code, res.balance) == (False, code, 1000)
    assert await wallet.balance("carol") == 1000
    assert await stream_total(runtime) == 0
    await flusher.drain()
    assert await runtime.pool.fetchval("SELECT count(*) FROM ledger_tx") == rows_before


async def test_an_ended_room_refuses_gifts(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    await fund(wallet, "dave", 50)
    assert (await wallet.spend(SpendRequest("dave", live_room, "rose", 1, "a"))).ok
    await streams.end_stream(runtime, live_room)
    res = await wallet.spend(SpendRequest("dave", live_room, "rose", 1, "b"))
    assert (res.ok, res.code, res.balance) == (False, "room_ended", 49)
    info = await streams.room_info(runtime, live_room)
    assert info is not None and not info.live and info.creator == "creator1"
    await streams.go_live(runtime, live_room, "creator1")
    assert (await wallet.spend(SpendRequest("dave", live_room, "rose", 1, "b"))).ok
    with pytest.raises(streams.RoomOwnedError):
        await streams.go_live(runtime, live_room, "someone-else")


async def test_the_daily_limit_refuses_what_would_exceed_it(
    runtime: Runtime, runner: ScriptRunner, live_room: str
) -> None:
    rt = dataclasses.replace(
        runtime, config=dataclasses.replace(runtime.config, daily_spend_limit=10))
    wallet = Wallet(rt, runner)
    await catalog.publish(rt.redis, rt.keys, wallet.catalog)
    await fund(wallet, "erin", 100)
    assert (await wallet.spend(SpendRequest("erin", live_room, "finger_heart", 2, "d1"))).ok
    res = await wallet.spend(SpendRequest("erin", live_room, "rose", 1, "d2"))
    assert (res.ok, res.code, res.balance) == (False, "daily_limit_exceeded", 90)


async def test_diamonds_round_down_and_carry_the_remainder_per_creator(
    runtime: Runtime, runner: ScriptRunner, live_room: str
) -> None:
    rt = dataclasses.replace(runtime, config=dataclasses.replace(
        runtime.config, diamonds_per_coin_num=1, diamonds_per_coin_den=3))
    wallet = Wallet(rt, runner)
    await catalog.publish(rt.redis, rt.keys, wallet.catalog)
    await fund(wallet, "fan", 100)
    for i in range(10):
        assert (await wallet.spend(SpendRequest("fan", live_room, "rose", 1, f"r{i}"))).ok
    state = await wallet.state("creator1")
    assert (state.diamonds, state.carry) == (3, 1)  # floor(10 / 3), 10 mod 3
    # A second credit for the same gift (the flusher's) changes nothing.
    assert await wallet.credit("creator1", "fan", "r0", 1, live_room, "rose", 1) == 0
    assert (await wallet.state("creator1")).diamonds == 3
    assert (await wallet.spend(SpendRequest("fan", live_room, "finger_heart", 1, "f"))).ok
    state = await wallet.state("creator1")
    assert (state.diamonds, state.carry) == (5, 0)  # floor(15 / 3): nothing lost


async def test_script_flush_under_load_fails_no_spend(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    await fund(wallet, "load", 10_000)
    stop = asyncio.Event()

    async def flush_scripts() -> int:
        flushes = 0
        while not stop.is_set():
            await runtime.redis.script_flush()
            flushes += 1
            await asyncio.sleep(0)  # yield so spends interleave with the flushes
        return flushes

    flusher_task = asyncio.create_task(flush_scripts())
    results = []
    for wave in range(10):
        results += await asyncio.gather(*(
            wallet.spend(SpendRequest("load", live_room, "rose", 1, f"w{wave}-{i}"))
            for i in range(200)
        ))
    stop.set()
    assert await flusher_task > 0
    assert [r.code for r in results if not r.ok] == []
    assert await wallet.balance("load") == 10_000 - 2000


async def test_a_viewers_own_daily_limit_applies_below_the_platforms(
    wallet: Wallet, live_room: str
) -> None:
    await fund(wallet, "frugal", 100)
    await wallet.set_daily_limit("frugal", 6)
    assert (await wallet.spend(SpendRequest("frugal", live_room, "finger_heart", 1, "a"))).ok
    res = await wallet.spend(SpendRequest("frugal", live_room, "rose", 2, "b"))
    assert (res.ok, res.code, res.balance) == (False, "daily_limit_exceeded", 95)
    assert (await wallet.spend(SpendRequest("frugal", live_room, "rose", 1, "c"))).ok
    await wallet.set_daily_limit("frugal", 0)
    assert (await wallet.spend(SpendRequest("frugal", live_room, "rose", 2, "b"))).ok


async def test_retries_return_the_first_result_whatever_the_creator_id_holds(
    wallet: Wallet, runtime: Runtime
) -> None:
    await streams.go_live(runtime, "odd-room", "creator with spaces {and braces}")
    await fund(wallet, "gus", 10)
    req = SpendRequest("gus", "odd-room", "rose", 2, "t1", combo="c-1")
    first = await wallet.spend(req)
    again = await wallet.spend(req)
    assert (first.ok, first.creator, first.balance) == (True, "creator with spaces {and braces}", 8)
    assert (again.ok, again.duplicate, again.creator, again.balance, again.coins) == (
        True, True, first.creator, 8, 2)
    assert (await wallet.spend(SpendRequest("gus", "odd-room", "rose", 2, "t1"))).code == (
        "tx_conflict")
