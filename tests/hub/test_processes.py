"""Real server processes: two uvicorn subprocesses sharing one Redis, and SIGTERM with 200
clients connected."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import asyncpg
import pytest

from protocol import Ack, GiftEvent, GoingAway, SendGift, ViewerCount
from server.auth import TokenIssuer
from server.config import Config
from server.money import streams
from server.money.wallet import Wallet
from server.runtime import Runtime
from server.storage.runners import script_runner
from tests.hub.support import Client, open_client
from tests.support.servers import subprocess_server

# Slow; and the same tests on single Redis and on the local Redis Cluster.
pytestmark = [pytest.mark.slow, pytest.mark.both_modes]


@pytest.fixture
async def wallet(runtime: Runtime) -> AsyncIterator[Wallet]:
    runner = script_runner(runtime.redis)
    await runner.load()
    yield Wallet(runtime, runner)


async def _send_gifts(sender: Client, room: str, prefix: str, n: int) -> list[str]:
    acked = []
    for i in range(n):
        tx = f"{prefix}-{i}"
        await sender.send(SendGift(id=tx, room=room, gift="rose", count=1, tx=tx))
        reply = await sender.reply(tx)
        assert isinstance(reply, Ack), reply
        acked.append(tx)
    return acked


async def test_two_processes_deliver_every_event_to_every_client_in_one_order(
    config: Config, runtime: Runtime, wallet: Wallet, issuer: TokenIssuer
) -> None:
    async with subprocess_server(config) as a, subprocess_server(config) as b:
        await streams.go_live(runtime, "big", "creator1", "two processes")
        senders = [f"s{i}" for i in range(10)]
        for user in senders:
            assert (await wallet.grant(user, 100, f"g-{user}", "admin")).ok
        users = senders + [f"v{i}" for i in range(40)]
        # Clients alternate between the processes: 25 each, 5 senders each.
        clients = await asyncio.gather(*(
            open_client((a if i % 2 == 0 else b).ws_url, issuer.mint(u, "viewer"))
            for i, u in enumerate(users)
        ))
        try:
            await asyncio.gather(*(c.join("big") for c in clients))
            per_sender = 10
            await asyncio.gather(*(
                _send_gifts(c, "big", u, per_sender)
                for c, u in zip(clients[:10], senders, strict=True)
            ))
            total = per_sender * len(senders)
            received = await asyncio.gather(*(c.wait_events(total) for c in clients))
            reference = [(e.seq, e.eid, e.sender) for e in received[0]]
            assert [s for s, _, _ in reference] == list(range(1, total + 1))
            for events in received:
                assert [(e.seq, e.eid, e.sender) for e in events] == reference
            # Presence is shared: both processes count all 50 viewers.
            await asyncio.gather(*(c.wait(
                lambda ms: [m for m in ms if isinstance(m, ViewerCount) and m.count == 50]
            ) for c in clients))
            # Every sender's gifts are all there.
            for u in senders:
                mine = [e for e in received[0] if isinstance(e, GiftEvent) and e.sender == u]
                assert len(mine) == per_sender
        finally:
            await asyncio.gather(*(c.close() for c in clients))


async def test_sigterm_with_200_clients_going_away_clean_close_and_no_lost_debit(
    config: Config, runtime: Runtime, wallet: Wallet, issuer: TokenIssuer,
    pool: asyncpg.Pool,
) -> None:
    async with subprocess_server(config) as srv:
        await streams.go_live(runtime, "r", "creator1", "drain")
        senders = [f"s{i}" for i in range(5)]
        for user in senders:
            assert (await wallet.grant(user, 1000, f"g-{user}", "admin")).ok
        tokens = [issuer.mint(senders[i] if i < 5 else f"v{i}", "viewer") for i in range(200)]
        clients: list[Client] = []
        for start in range(0, 200, 50):
            clients += await asyncio.gather(
                *(open_client(srv.ws_url, t) for t in tokens[start : start + 50])
            )
        await asyncio.gather(*(c.join("r") for c in clients))
        acked: dict[str, list[str]] = {u: [] for u in senders}

        async def keep_sending(c: Client, user: str) -> None:
            # Gifts in flight when SIGTERM lands: each is acked before the close, or was never
            # charged (sent after the server stopped reading).
            for i in range(1000):
                tx = f"{user}-{i}"
                try:
                    await c.send(SendGift(id=tx, room="r", gift="rose", count=1, tx=tx))
                    reply = await c.reply(tx)
                except Exception:  # the connection closed under it (drain)
                    return
                if isinstance(reply, Ack):
                    acked[user].append(tx)

        sending = [asyncio.create_task(keep_sending(c, u))
                   for c, u in zip(clients[:5], senders, strict=True)]
        await clients[-1].wait_events(20)  # gifts are flowing
        assert srv.process is not None
        srv.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.wait_closed() for c in clients))
        await asyncio.gather(*sending)
        assert set(codes) == {1001}
        for c in clients:
            away = [m for m in c.messages if isinstance(m, GoingAway)]
            assert len(away) == 1 and away[0].reconnect_ms == config.reconnect_hint_ms
        rc = await asyncio.to_thread(srv.process.wait, 30)
        assert rc == 0
        await asyncio.gather(*(c.close() for c in clients))
    # Every debit reached the ledger: flush what the stopped server left in the streams.
    from server.money.flusher import Flusher, ensure_groups

    await ensure_groups(runtime)
    flusher = Flusher(runtime, wallet)
    await flusher.drain(claim_all=True)
    await flusher.stop()
    rows = await pool.fetch("SELECT user_id, ref, coins FROM ledger_tx WHERE kind = 'gift'")
    ledger: dict[str, set[str]] = {u: set() for u in senders}
    coins: dict[str, int] = dict.fromkeys(senders, 0)
    for row in rows:
        ledger[row["user_id"]].add(row["ref"])
        coins[row["user_id"]] += row["coins"]
    for user in senders:
        assert ledger[user] == set(acked[user])  # every charged gift reached its ack
        assert coins[user] == 1000 - await wallet.balance(user)
    assert sum(len(v) for v in acked.values()) >= 20
