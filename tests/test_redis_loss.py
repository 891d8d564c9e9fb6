"""Redis loses its last writes (a machine crash under AOF `everysec`): restarted from an AOF cut
back, while two servers have receivers joined and gifts keep coming.

Before room epochs, the room's seq went back (here from 105 to 60), every server dropped the next
45 events as "already delivered", receivers missed them without a word, and event ids named two
different gifts. Now: the restarted Redis starts a new epoch for the room; every receiver is told
`gap` and then gets every event published after the restart, none skipped, none twice; no event
id names two gifts. Then `giftwire rebuild --force` and a retry of every lost transaction: each is
acknowledged `duplicate` and shown to nobody again, reconcile is clean, and the leaderboard equals
the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import msgpack
import pytest

from protocol import Ack, ErrorReply, Gap, GiftEvent, Joined, SendGift
from server.auth import TokenIssuer
from server.config import Config
from server.money import catalog, streams
from server.money.wallet import SpendRequest, Wallet
from server.runtime import open_runtime, redis_client
from server.storage.embedded import EmbeddedRedis
from server.storage.scripts import ScriptRunner
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import inprocess_server
from tests.wallet.test_rebuild import cli

pytestmark = pytest.mark.slow
ROOM = "r"
SENDERS = ["s0", "s1", "s2"]


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """Our own Redis with AOF `everysec` (the machine's Redis is never restarted by a test)."""
    redis = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(redis.start)
    try:
        yield redis
    finally:
        if redis.process is not None:
            redis.process.kill()
            await asyncio.to_thread(redis.process.wait)


def _aof(redis: EmbeddedRedis) -> Path:
    """The file Redis appends to: `appendonly.aof` (6.x), the last incr file (7.x)."""
    multi = sorted((redis.dir / "appendonlydir").glob("*.incr.aof"))
    return multi[-1] if multi else redis.dir / "appendonly.aof"


async def _restart_losing_everything_after(redis: EmbeddedRedis, size: int) -> None:
    """SIGKILL, then the AOF cut back to `size` bytes: what a machine crash leaves when the
    writes after that point were not yet fsynced (Redis drops a command cut in half)."""
    assert redis.process is not None
    redis.process.kill()
    await asyncio.to_thread(redis.process.wait)
    redis.process = None
    os.truncate(_aof(redis), size)
    await asyncio.to_thread(redis.start)


async def _gift(client: Client, tx: str, gift: str = "rose", count: int = 1) -> Ack:
    """Send until answered: `unavailable` and `rate_limited` mean "the same tx again after
    retry_ms" (docs/protocol.md); the wait is the protocol's, not a test synchronisation."""
    while True:
        seen = len(client.messages)
        await client.send(SendGift(id=tx, room=ROOM, gift=gift, count=count, tx=tx))

        def answer(msgs: list[object], seen: int = seen) -> Ack | ErrorReply | None:
            for m in msgs[seen:]:
                if isinstance(m, Ack | ErrorReply) and m.tx == tx:
                    return m
            return None

        reply = await client.wait(answer)
        if isinstance(reply, Ack):
            return reply
        assert reply.code in ("unavailable", "rate_limited"), reply
        await asyncio.sleep((reply.retry_ms or 100) / 1000)


async def _poll(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)  # polling another process's (the flusher's) effect on Postgres


def _walk(client: Client) -> tuple[tuple[str, int], list[GiftEvent], int]:
    """A receiver's view: (final position, events in order, gaps). Fails on any event that does
    not follow its position: a silent miss, a repeat, or another epoch without `gap`."""
    pos: tuple[str, int] | None = None
    events: list[GiftEvent] = []
    gaps = 0
    for m in client.messages:
        if isinstance(m, Joined):
            pos = (m.epoch, m.seq)
        elif isinstance(m, Gap):
            assert pos is not None
            pos, gaps = (m.epoch, m.seq), gaps + 1
        elif isinstance(m, GiftEvent):
            assert pos is not None and (m.epoch, m.seq) == (pos[0], pos[1] + 1), (pos, m)
            pos = (m.epoch, m.seq)
            events.append(m)
    assert pos is not None
    return pos, events, gaps


async def test_redis_restarted_from_a_cut_aof_loses_no_event_silently_and_rebuild_restores_rooms(
    config: Config, pool: asyncpg.Pool, issuer: TokenIssuer, private_redis: EmbeddedRedis
) -> None:
    cfg = dataclasses.replace(config, redis_url=private_redis.url)
    async with (
        contextlib.AsyncExitStack() as cleanup,
        inprocess_server(cfg) as one,
        inprocess_server(cfg) as two,
    ):
        rt = one.runtime
        k = rt.keys
        await setup_room(rt, ROOM)
        for s in SENDERS:
            await grant(rt, s, 100_000)
        servers = [one, two]
        receivers = [
            await open_client(servers[i % 2].ws_url, issuer.mint(f"v{i}", "viewer"),
                              binary=i % 3 != 0)
            for i in range(6)
        ]
        senders = [await open_client(servers[i % 2].ws_url, issuer.mint(s, "viewer"))
                   for i, s in enumerate(SENDERS)]
        try:
            for c in (*receivers, *senders):
                await c.join(ROOM)

            async def phase(name: str, n: int) -> list[tuple[Client, str]]:
                txs = [(c, f"{name}-{s}-{i}") for i in range(n)
                       for c, s in zip(senders, SENDERS, strict=True)]
                by_sender: dict[Client, list[str]] = {}
                for c, tx in txs:
                    by_sender.setdefault(c, []).append(tx)

                async def run(c: Client, mine: list[str]) -> None:
                    for tx in mine:
                        assert not (await _gift(c, tx)).duplicate

                await asyncio.gather(*(run(c, mine) for c, mine in by_sender.items()))
                return txs

            async def receivers_at(epoch: str, seq: int) -> None:
                for r in receivers:
                    def there(_: object, r: Client = r) -> bool:
                        return _walk(r)[0] == (epoch, seq)

                    await r.wait(there)

            await phase("a", 20)
            cut = _aof(private_redis).stat().st_size  # everything after this is "not fsynced"
            old_epoch = (await rt.redis.hget(k.room_epoch(ROOM), "id")).decode()
            await receivers_at(old_epoch, 60)

            lost = await phase("b", 15)
            await receivers_at(old_epoch, 105)

            async def ledger_has_all() -> bool:
                n = await pool.fetchval("SELECT count(*) FROM ledger_tx WHERE kind = 'gift'")
                return bool(n == 105)

            await _poll("the flusher wrote every gift to Postgres", ledger_has_all)

            # The crash, and gifts sent while Redis is down and coming back.
            after = asyncio.ensure_future(phase("c", 10))
            await _restart_losing_everything_after(private_redis, cut)
            await after
            # A client of our own: the runtime's pooled connections died with Redis, and
            # redis-py fails the first command on each (the servers' own paths reconnect).
            fresh = redis_client(private_redis.url)
            cleanup.push_async_callback(fresh.aclose)
            assert int(await fresh.get(k.room_seq(ROOM))) == 60 + 30  # the seq went back
            new_epoch = (await fresh.hget(k.room_epoch(ROOM), "id")).decode()
            assert new_epoch != old_epoch
            history = [GiftEvent.from_dict(msgpack.unpackb(e[b"e"]))
                       for _id, e in await fresh.xrange(k.room_history(ROOM))]
            assert [(e.epoch, e.seq) for e in history] == [(new_epoch, s) for s in range(61, 91)]

            await receivers_at(new_epoch, 90)
            seen: dict[str, tuple[str, str, int, int]] = {}
            for r in receivers:
                pos, events, gaps = _walk(r)
                assert pos == (new_epoch, 90) and gaps == 1
                assert [e.eid for e in events if e.epoch == new_epoch] == [e.eid for e in history]
                for e in events:  # no event id names two gifts
                    assert seen.setdefault(e.eid, (e.sender, e.gift, e.count, e.ts)) == (
                        e.sender, e.gift, e.count, e.ts)
            assert len(seen) == 105 + 30

            # Item 2: rebuild from the ledger, then every lost transaction retried.
            code, out = await cli(cfg, "rebuild", "--force")
            assert code == 0, out
            for c, tx in lost:
                assert (await _gift(c, tx)).duplicate
            marker = f"marker-{uuid.uuid4().hex}"
            await _gift(senders[0], marker, "doughnut")
            for r in receivers:
                await r.wait(lambda _, r=r: any(e.gift == "doughnut" for e in r.events()))
                pos, events, _gaps = _walk(r)
                assert pos == (new_epoch, 91)  # the marker came next: no retry was shown again
                assert events[-1].gift == "doughnut"
            code, out = await cli(cfg, "reconcile")
            assert code == 0, out
            ledger = {r["user_id"]: int(r["coins"]) for r in await pool.fetch(
                """SELECT user_id, sum(coins) AS coins FROM ledger_tx
                   WHERE kind = 'gift' AND room = $1 GROUP BY user_id""", ROOM)}
            board = {u.decode(): int(c) for u, c in
                     await fresh.zrange(k.room_leaderboard(ROOM), 0, -1, withscores=True)}
            assert board == ledger
            gifts = await pool.fetchval("SELECT count(*) FROM ledger_tx WHERE kind = 'gift'")
            assert gifts == 105 + 30 + 1  # each retried tx charged once
        finally:
            await asyncio.gather(*(c.close() for c in (*receivers, *senders)))


async def test_a_redis_process_crash_loses_no_acknowledged_spend(
    config: Config, pool: asyncpg.Pool, private_redis: EmbeddedRedis
) -> None:
    """The other half of the loss window (docs/ledger.md): SIGKILL of redis-server alone, the
    host staying up. Redis replies only after its write() of the AOF reached the kernel, so the
    page cache keeps every acknowledged write: none is lost (a machine crash loses the unsynced
    second, as above)."""
    cfg = dataclasses.replace(config, redis_url=private_redis.url)
    users = [f"u{i}" for i in range(8)]
    async with open_runtime(cfg, migrate=False) as rt:
        runner = ScriptRunner(rt.redis)
        await runner.load()
        runner.start()
        try:
            wallet = Wallet(rt, runner)
            await catalog.publish(rt.redis, rt.keys, wallet.catalog)
            await streams.go_live(rt, ROOM, "creator1")
            for u in users:
                assert (await wallet.grant(u, 1_000_000, f"g-{u}", "admin")).ok
            acked: list[tuple[str, str, int]] = []
            enough = asyncio.Event()

            async def spend(user: str) -> None:
                for i in range(100_000):
                    tx = f"{user}-{i}"
                    try:
                        result = await wallet.spend(SpendRequest(user, ROOM, "rose", 1, tx))
                    except ConnectionError:
                        return  # Redis is gone: this tx got no answer
                    assert result.ok
                    acked.append((user, tx, result.balance))
                    if len(acked) >= 2000:
                        enough.set()

            spenders = [asyncio.ensure_future(spend(u)) for u in users]
            await enough.wait()
            assert private_redis.process is not None
            private_redis.process.kill()  # mid-stream: spends are in flight
            await asyncio.gather(*spenders)
            await asyncio.to_thread(private_redis.process.wait)
            private_redis.process = None
            await asyncio.to_thread(private_redis.start)
            for user, tx, balance in acked:
                again = await wallet.spend(SpendRequest(user, ROOM, "rose", 1, tx))
                assert (again.ok, again.duplicate, again.balance) == (True, True, balance)
        finally:
            await runner.stop()
