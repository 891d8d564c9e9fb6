"""`balance` pushes end to end (docs/protocol.md, `balance`): a session on one server process is
told of every change to its user's wallet made on another process, on both codecs; its own gift's
push comes after the gift's ack; after its process's pub/sub reconnects it gets a fresh `sync`."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from protocol import Ack, BalanceUpdate, SendGift, ServerMessage
from server.auth import TokenIssuer
from server.config import Config
from server.money.payments import sign_sandbox_receipt
from tests.hub.support import Client, open_client, setup_room
from tests.support.servers import RunningServer, subprocess_server

_ids = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pushes(msgs: list[ServerMessage]) -> list[BalanceUpdate]:
    return [m for m in msgs if isinstance(m, BalanceUpdate)]


async def next_push(client: Client, after: int, reason: str) -> BalanceUpdate:
    """The first push with a version above `after`, which must have this reason."""
    push: BalanceUpdate = await client.wait(
        lambda ms: next((p for p in pushes(ms) if p.version > after), None))
    assert push.reason == reason, push
    return push


@pytest.fixture
async def other(config: Config, server: RunningServer) -> AsyncIterator[RunningServer]:
    """A second server process. Only the in-process server flushes the ledger, so its flusher's
    `wait_caught_up` means every entry is in Postgres (a reversal reads the ledger there)."""
    async with subprocess_server(config, extra_env={"GIFTWIRE_RUN_FLUSHER": "0"}) as running:
        yield running


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_every_change_on_another_process_is_pushed_in_order(
    binary: bool, config: Config, server: RunningServer, other: RunningServer,
    issuer: TokenIssuer,
) -> None:
    rt = server.runtime
    await setup_room(rt, "r1", creator="host")
    await setup_room(rt, "own", creator="u1")  # u1's own room: gifts there earn u1 diamonds
    me = issuer.mint("u1", "creator")  # a creator may also gift, and redeems diamonds
    admin = issuer.mint("root", "admin")
    client = await open_client(server.ws_url, me, binary=binary)
    seen: list[BalanceUpdate] = []

    async def expect(reason: str, balance: int, diamonds: int | None = None) -> None:
        push = await next_push(client, seen[-1].version if seen else 0, reason)
        assert push.balance == balance, push
        assert push.diamonds == diamonds, push
        seen.append(push)

    try:
        async with httpx.AsyncClient(base_url=other.base_url) as http:
            async def post(path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
                r = await http.post(path, json=body, headers=bearer(token))
                assert r.status_code == 200, r.text
                return dict(r.json())

            # A purchase.
            receipt = sign_sandbox_receipt(config.sandbox_receipt_secret, "u1", "coins_1400",
                                           "rcpt-1")
            bought = await post("/api/purchases", me, {"package": "coins_1400",
                                                       "receipt": receipt})
            await expect("purchase", bought["balance"])
            assert bought["balance"] == 1400
            # A grant.
            granted = await post("/api/admin/grant", admin,
                                 {"user": "u1", "coins": 500, "grant_id": "g1"})
            await expect("grant", 1900)
            assert granted["balance"] == 1900
            # A reversal of the purchase (the ledger row must be in Postgres first).
            await rt.components["flusher"].wait_caught_up()
            reversed_ = await post("/api/admin/reverse", admin, {"receipt": "rcpt-1"})
            await expect("reversal", 500)
            assert reversed_["balance"] == 500
            # Diamonds: a viewer's gift in u1's room credits u1, then u1 redeems.
            await post("/api/admin/grant", admin, {"user": "fan", "coins": 1500,
                                                   "grant_id": "g2"})
            fan = issuer.mint("fan", "viewer")
            await post("/api/gifts", fan, {"room": "own", "gift": "corgi", "count": 5,
                                           "tx": "fan-1"})
            await expect("credit", 500, 1495)
            await post("/api/me/redeem", me, {"diamonds": 1000, "request_id": "payout-1"})
            await expect("redeem", 500, 495)
            # A gift from another connection of the same user, on the other process: that
            # connection sees its ack first, then the push.
            device = await open_client(other.ws_url, me, binary=binary)
            try:
                await device.join("r1")
                await device.send(SendGift(id="d1", room="r1", gift="doughnut", count=2,
                                           tx="dev-1"))
                await expect("gift", 440)
                ack = await device.reply("d1")
                assert isinstance(ack, Ack) and ack.balance == 440
                own = await next_push(device, seen[-2].version, "gift")
                assert own.version == seen[-1].version and own.balance == 440
                order = [m for m in device.messages if m in (ack, own)]
                assert order == [ack, own]
            finally:
                await device.close()
            # A gift over HTTP.
            sent = await post("/api/gifts", me, {"room": "r1", "gift": "rose", "count": 40,
                                                 "tx": "http-1"})
            await expect("gift", 400)
            assert sent["balance"] == 400
        # Every push exactly once, in the wallet's order.
        got = pushes(client.messages)
        assert [p.version for p in got] == [p.version for p in seen]
        assert [p.version for p in got] == sorted({p.version for p in got})
    finally:
        await client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_own_gift_ack_then_balance_and_sync_after_pubsub_reconnect(
    binary: bool, server: RunningServer, issuer: TokenIssuer, redis: Redis,
) -> None:
    rt = server.runtime
    await setup_room(rt, "r1", creator="host")
    assert (await rt.components["wallet"].grant("v1", 100, "g1", "admin")).ok
    client = await open_client(server.ws_url, issuer.mint("v1", "viewer"), binary=binary)
    try:
        await client.join("r1")
        for i in range(20):  # pipelined: every ack precedes its push
            await client.send(SendGift(id=f"s{i}", room="r1", gift="rose", count=1, tx=f"t{i}"))
        await client.wait(lambda ms: len([m for m in ms if isinstance(m, Ack)]) == 20)
        last = await client.wait(lambda ms: next(
            (p for p in pushes(ms) if p.balance == 80), None))
        acks = {m.balance: i for i, m in enumerate(client.messages) if isinstance(m, Ack)}
        for i, m in enumerate(client.messages):
            if isinstance(m, BalanceUpdate):
                assert m.reason == "gift" and acks[m.balance] < i
        versions = [p.version for p in pushes(client.messages)]
        assert versions == sorted(set(versions))
        # The pushes' pub/sub connection is cut: once it has re-subscribed, a fresh read.
        broker = rt.components["realtime"].pushes.broker
        generation = broker.generation
        killed = await redis.execute_command("CLIENT", "KILL", "ID", broker.client_id)
        assert killed == 1
        await broker.wait_until(lambda: broker.generation > generation)
        sync = await client.wait(lambda ms: next(
            (p for p in pushes(ms) if p.reason == "sync"), None))
        assert (sync.balance, sync.version, sync.diamonds) == (80, last.version, 0)
    finally:
        await client.close()
