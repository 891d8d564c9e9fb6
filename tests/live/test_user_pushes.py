"""server/live/user_pushes.py on a real Redis: what each session of a user is sent, and in which
order, while one of them has a gift in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from protocol import BalanceUpdate, Role, ServerMessage
from server.auth import Principal
from server.live.user_pushes import UserPushes
from server.money import catalog, streams
from server.money.wallet import SpendRequest, Wallet
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner


class Session:
    """What the pushes see of a session: its principal, and what it was sent."""

    def __init__(self, user: str, role: Role = Role.VIEWER) -> None:
        self.principal: Principal | None = Principal(user, role, user, "tid", 2**40)
        self.close_code: int | None = None
        self.sent: list[BalanceUpdate] = []
        self._changed = asyncio.Event()

    def reply(self, msg: ServerMessage) -> None:
        assert isinstance(msg, BalanceUpdate)
        self.sent.append(msg)
        self._changed.set()

    async def wait_for(self, n: int) -> list[BalanceUpdate]:
        while len(self.sent) < n:
            self._changed.clear()
            await self._changed.wait()
        return self.sent


@pytest.fixture
async def wallet(runtime: Runtime) -> AsyncIterator[Wallet]:
    runner = ScriptRunner(runtime.redis)
    await runner.load()
    runner.start()
    w = Wallet(runtime, runner)
    await catalog.publish(runtime.redis, runtime.keys, w.catalog)
    await streams.go_live(runtime, "r1", "host", "a stream")
    try:
        yield w
    finally:
        await runner.stop()


@pytest.fixture
async def pushes(runtime: Runtime) -> AsyncIterator[UserPushes]:
    async with contextlib.AsyncExitStack() as stack:
        yield await UserPushes.start(runtime, stack)


async def test_a_session_gets_its_own_gifts_push_after_release_and_later_ones_behind_it(
    wallet: Wallet, pushes: UserPushes
) -> None:
    sending, other, overlay = Session("v1"), Session("v1"), Session("v1", Role.OVERLAY)
    for s in (sending, other, overlay):
        await pushes.attach(s)
    assert (await wallet.grant("v1", 100, "g1", "admin")).ok
    assert [p.reason for p in await sending.wait_for(1)] == ["grant"]
    pushes.hold(sending, "t1")  # `sending` carries out gift t1: its reply is not written yet
    assert (await wallet.spend(SpendRequest("v1", "r1", "doughnut", 1, "t1"))).ok
    assert (await wallet.purchase("v1", "coins_70", "rc1")).ok
    # The other session is told at once, in the wallet's order. Each push is handed to every
    # session of the user at once, so once `other` has both, `sending` has been handed both too.
    got = await other.wait_for(3)
    assert [(p.reason, p.balance) for p in got] == [("grant", 100), ("gift", 70),
                                                    ("purchase", 140)]
    assert [p.reason for p in sending.sent] == ["grant"]  # both wait for t1's reply
    pushes.release(sending, "t1")
    assert [(p.reason, p.version) for p in sending.sent] == [(p.reason, p.version) for p in got]
    assert overlay.sent == []  # an overlay has no wallet


async def test_old_versions_are_never_sent_and_a_sync_is_a_fresh_read(
    runtime: Runtime, wallet: Wallet, pushes: UserPushes
) -> None:
    session = Session("v2")
    await pushes.attach(session)
    assert (await wallet.grant("v2", 50, "g1", "admin")).ok
    assert (await wallet.grant("v2", 50, "g2", "admin")).ok
    first = await session.wait_for(2)
    pushes.release(session, "unknown")  # nothing held: nothing happens
    await pushes.sync_all()
    sync = (await session.wait_for(3))[-1]
    assert (sync.reason, sync.balance, sync.version, sync.diamonds) == (
        "sync", 100, first[-1].version, 0)
    # A sync older than what the session was last sent (its read crossed a newer push) is
    # dropped: the session never goes back.
    await runtime.redis.hset(runtime.keys.wallet("v2"), "bv", 1)
    await pushes.sync_all()
    assert len(session.sent) == 3
    pushes.detach(session)
    assert (await wallet.grant("v2", 1, "g3", "admin")).ok
    assert runtime.keys.balance_channel("v2") not in pushes.broker.channels
