"""The flusher's stream reads: over the lean RESP connection, and one batch read ahead while the
previous one is written. Exactly once (M3) must hold whatever happens to a batch read ahead."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from server.config import Config
from server.money.flusher import GROUP, Flusher
from server.money.wallet import SpendRequest, Wallet
from server.runtime import Runtime
from server.storage.resp import Endpoint, RespClient
from tests.conftest import with_config
from tests.wallet.test_spend import fund, stream_total

BATCH = 7


@pytest.fixture
def config(config: Config) -> Config:
    # Small batches: a backlog of a few dozen entries is many full batches, so reads ahead happen.
    return with_config(config, flush_batch=BATCH)


async def _backlog(wallet: Wallet, room: str, users: int, gifts: int, tag: str = "") -> int:
    """Grants and gifts, all at once; returns how many transactions the ledger should get."""
    await asyncio.gather(*(fund(wallet, f"v{tag}{u}", 1000) for u in range(users)))
    results = await asyncio.gather(*(
        wallet.spend(SpendRequest(f"v{tag}{u}", room, "rose", 1, f"t{i}"))
        for u in range(users) for i in range(gifts)
    ))
    assert all(r.ok for r in results)
    return users + 2 * users * gifts  # grants, gifts, creator credits


async def _ledger_counts(rt: Runtime) -> tuple[int, int]:
    row = await rt.pool.fetchrow(
        "SELECT count(*), count(DISTINCT tx_key) FROM ledger_tx")
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.both_modes
async def test_a_backlog_read_ahead_is_written_exactly_once(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    expected = await _backlog(wallet, live_room, users=6, gifts=8)
    assert expected > 5 * BATCH
    assert await flusher.drain() == expected
    assert await _ledger_counts(runtime) == (expected, expected)
    assert flusher.written == expected
    assert await stream_total(runtime) == 0
    assert await flusher.report_lag() == 0


@pytest.mark.both_modes
async def test_a_flusher_dying_with_a_batch_read_ahead_loses_and_duplicates_nothing(
    wallet: Wallet, live_room: str, runtime: Runtime
) -> None:
    expected = await _backlog(wallet, live_room, users=5, gifts=6)
    dying = Flusher(runtime, wallet)
    # One full batch written; the next one is read ahead (pending on this consumer) when it dies.
    # (COUNT is per stream: a batch holds up to BATCH entries of each shard.)
    first = await dying._read_and_flush(None)
    assert first >= BATCH
    ahead = dying._ahead
    assert ahead is not None
    read_ahead = len((await ahead)[0])
    assert read_ahead >= BATCH
    await dying.stop()  # like a crash: nothing of the batch read ahead was written or acked
    written, _ = await _ledger_counts(runtime)
    assert written == first
    pending = sum([(await runtime.redis.xpending(s, GROUP))["pending"]
                   for s in runtime.keys.ledger_streams()])
    assert pending == read_ahead
    heir = Flusher(runtime, wallet)
    try:
        await heir.drain(claim_all=True)
    finally:
        await heir.stop()
    assert await _ledger_counts(runtime) == (expected, expected)
    assert await stream_total(runtime) == 0


@pytest.mark.both_modes
async def test_reads_survive_a_cut_connection_and_a_deleted_group(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    expected = await _backlog(wallet, live_room, users=2, gifts=3)
    assert await flusher.drain() == expected
    # Redis drops the flusher's read connection: the next read opens a new one.
    name = f"giftwire-flusher-{flusher.name}"
    ids = [c["id"] for c in await runtime.redis.client_list() if c.get("name") == name]
    assert len(ids) == 1
    assert await runtime.redis.client_kill_filter(_id=ids[0]) == 1
    more = await _backlog(wallet, live_room, users=1, gifts=2, tag="b")
    assert await flusher.drain() == more
    # A group deleted under the flusher (an operator's mistake) is created again, and what the
    # stream still holds is written (or dropped as already written), never twice.
    for stream in runtime.keys.ledger_streams():
        await runtime.redis.xgroup_destroy(stream, GROUP)
    spent = await wallet.spend(SpendRequest("v1", live_room, "rose", 1, "after"))
    assert spent.ok
    assert await flusher.drain() == 2  # first attempt fails with NOGROUP, the retry reads
    assert flusher.failures >= 1
    total = expected + more + 2
    assert await _ledger_counts(runtime) == (total, total)


async def test_the_lean_client_returns_raw_replies_and_raises_error_replies(
    runtime: Runtime,
) -> None:
    client = RespClient(Endpoint.of(runtime.redis), name="giftwire-test")
    key = runtime.keys.prefix + "lean"
    try:
        assert await client.call("XADD", key, "*", "a", b"\x00\xff") is not None
        reply = await client.call("XRANGE", key, "-", "+")
        assert reply[0][1] == [b"a", b"\x00\xff"]  # bytes, not decoded, a flat field list
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await client.call("GET", key)
        assert await client.call("PING") == b"PONG"  # still usable after an error reply
    finally:
        client.close()
        await runtime.redis.delete(key)


@pytest.mark.both_modes
async def test_a_stream_that_alone_is_behind_is_read_in_bigger_batches(
    wallet: Wallet, live_room: str, flusher: Flusher, runtime: Runtime
) -> None:
    # One viewer, one creator: at most two streams hold the backlog.
    expected = await _backlog(wallet, live_room, users=1, gifts=40)
    first = await flusher._read_and_flush(None)
    assert first <= 2 * BATCH
    ahead = flusher._ahead
    assert ahead is not None
    entries, _ = await ahead
    per_shard: dict[int, int] = {}
    for shard, _sid, _fields in entries:
        per_shard[shard] = per_shard.get(shard, 0) + 1
    # Larger than a batch per stream, and never more than four batches in hand.
    assert BATCH < max(per_shard.values()) <= 4 * BATCH
    # The batch read ahead is still in the flusher's hand (a done task): drained exactly once.
    assert await flusher.drain() == expected - first
    assert await _ledger_counts(runtime) == (expected, expected)
    assert await stream_total(runtime) == 0
