"""A master SIGKILLed under spend and fan-out load, its replica promoted: spends resume with none
doubled, every receiver gets every acknowledged gift (or is told `gap`), and reconcile is clean.

The killed master is the one serving the room's slot (its seq, history and pub/sub shard), so the
fan-out path fails over as well as some wallet shards' spends."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from protocol import Ack, ErrorCode, ErrorReply, Gap, GiftEvent, SendGift
from server.auth import TokenIssuer
from server.config import Config
from server.money.flusher import Flusher
from server.money.reconcile import reconcile
from tests.conftest import with_config
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.cluster import LocalCluster
from tests.support.servers import RunningServer

ROOM = "stage"
SENDERS = 3
VIEWERS = 4
AFTER_PROMOTION = 15  # gifts each sender gets acknowledged once the replica took over


@pytest.fixture
def redis_mode() -> str:
    return "cluster"


@pytest.fixture
def config(config: Config) -> Config:
    # No idle claim within the test: the server's own flusher must catch up by itself after the
    # failover (its reads that failed on the dead master left the live masters' entries pending
    # on it; it reads them again, server/money/flusher.py), not by a claim 30 s later.
    return with_config(config, flush_claim_idle_ms=3_600_000)


async def _sender(client: Client, name: str, underway: asyncio.Event,
                  promoted: asyncio.Event) -> list[str]:
    """Sends gifts one after another, each retried under its own tx id until acknowledged
    (what a real client does with `unavailable`): returns the acknowledged tx ids."""
    acked: list[str] = []
    after = 0
    while after < AFTER_PROMOTION:
        tx = f"{name}-{len(acked)}"
        attempt = 0
        while True:
            rid = f"{tx}-r{attempt}"
            await client.send(SendGift(id=rid, room=ROOM, gift="rose", count=1, tx=tx))
            reply = await client.reply(rid)
            if isinstance(reply, Ack):
                break
            assert isinstance(reply, ErrorReply), reply
            # unavailable: a backend failed over meanwhile; rate_limited: this loop is faster
            # than a viewer may send. Both change nothing and say when to retry.
            assert reply.code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED), reply
            attempt += 1
            await asyncio.sleep((reply.retry_ms or 100) / 1000)  # the server's retry advice
        acked.append(tx)
        if len(acked) == 5:
            underway.set()
        after += promoted.is_set()
    return acked


async def test_a_master_killed_under_load_loses_and_doubles_nothing(
    server: RunningServer, issuer: TokenIssuer, redis_cluster: LocalCluster
) -> None:
    rt = server.runtime
    await setup_room(rt, ROOM)
    names = [f"sender{i}" for i in range(SENDERS)]
    for name in names:
        await grant(rt, name, 100_000)
    senders = [await open_client(server.ws_url, issuer.mint(n, "viewer")) for n in names]
    viewers = [await open_client(server.ws_url, issuer.mint(f"viewer{i}", "viewer"))
               for i in range(VIEWERS)]
    victim = redis_cluster.owner(rt.keys.room_seq(ROOM))
    try:
        for client in senders + viewers:
            await client.join(ROOM)
        underway, promoted = asyncio.Event(), asyncio.Event()
        load = asyncio.gather(*(_sender(c, n, underway, promoted)
                                for c, n in zip(senders, names, strict=True)))
        await underway.wait()
        await asyncio.to_thread(redis_cluster.kill, victim)
        await asyncio.to_thread(redis_cluster.wait_promoted, victim)
        promoted.set()
        acked = dict(zip(names, await load, strict=True))
        await rt.components["flusher"].wait_caught_up()  # by itself: no claim (see `config`)

        # Spends: each acknowledged tx debited once (the ledger has it once; balances agree).
        wallet = rt.components["wallet"]
        flusher = Flusher(rt, wallet)  # its own: the server's is running (as `giftwire reconcile`)
        try:
            assert await reconcile(rt, flusher) == []
        finally:
            await flusher.stop()
        rows = await rt.pool.fetch(
            "SELECT user_id, count(*) AS n, sum(coins) AS coins FROM ledger_tx "
            "WHERE kind = 'gift' GROUP BY user_id")
        gifts = {r["user_id"]: r["n"] for r in rows}
        assert gifts == {n: len(txs) for n, txs in acked.items()}
        spent = {r["user_id"]: r["coins"] for r in rows}
        for name in names:
            assert await wallet.balance(name) == 100_000 - abs(spent[name])

        # Fan-out: each viewer has every acknowledged gift once, in order, or was told `gap`.
        for viewer in viewers:
            last = {n: len(txs) for n, txs in acked.items()}
            await viewer.wait(lambda _, v=viewer, last=last: Counter(
                e.sender for e in v.events(ROOM) if isinstance(e, GiftEvent)) == last
                or any(isinstance(m, Gap) for m in v.messages))
            events = [e for e in viewer.events(ROOM) if isinstance(e, GiftEvent)]
            assert len({e.eid for e in events}) == len(events)  # nothing shown twice
            positions = [(e.epoch, e.seq) for e in events]
            for (epoch_a, seq_a), (epoch_b, seq_b) in itertools.pairwise(positions):
                assert epoch_a != epoch_b or seq_b == seq_a + 1  # in order, no silent hole
            if not any(isinstance(m, Gap) for m in viewer.messages):
                assert Counter(e.sender for e in events) == {n: len(t) for n, t in acked.items()}
    finally:
        await asyncio.gather(*(c.close() for c in senders + viewers))
        await asyncio.to_thread(redis_cluster.heal)
