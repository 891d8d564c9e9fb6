"""Room epochs: when a room's seq/history state is created afresh or goes back, joined members
are told `gap` and get every event of the new epoch; a resume point of another epoch is a `gap`
with a fresh snapshot; event ids are never reused; client input never starts an epoch.
(The Redis restart itself, from an AOF cut back, is tests/test_redis_loss.py.)"""

from __future__ import annotations

import pytest

from protocol import Ack, Gap, GiftEvent, SendGift
from server.auth import TokenIssuer
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def _gift(sender: Client, tx: str) -> None:
    await sender.send(SendGift(id=tx, room="r", gift="rose", count=1, tx=tx))
    assert isinstance(await sender.reply(tx), Ack)


def _gaps(client: Client) -> list[Gap]:
    return [m for m in client.messages if isinstance(m, Gap)]


async def test_a_room_whose_state_is_lost_starts_a_new_epoch_and_members_miss_nothing_silently(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    k = rt.keys
    await setup_room(rt, "r")
    await grant(rt, "s", 100)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"), binary=False)
    try:
        await sender.join("r")
        first = await viewer.join("r")
        for i in range(3):
            await _gift(sender, f"a{i}")
        old = await viewer.wait_events(3)
        assert {e.epoch for e in old} == {first.epoch}
        # Redis lost the room's seq, epoch and history (a failover to a replica without them).
        await rt.redis.delete(k.room_seq("r"), k.room_epoch("r"), k.room_history("r"))
        for i in range(2):
            await _gift(sender, f"b{i}")
        events = await viewer.wait_events(5)
        new = events[-1].epoch
        assert new != first.epoch
        assert [(e.epoch, e.seq) for e in events] == [
            (first.epoch, 1), (first.epoch, 2), (first.epoch, 3), (new, 1), (new, 2)]
        assert len({e.eid for e in events}) == 5
        assert [(g.epoch, g.seq) for g in _gaps(viewer)] == [(new, 0)]
        assert rt.metrics.registry.get_sample_value("giftwire_room_epoch_changes_total") == 1
        gap_at = next(i for i, m in enumerate(viewer.messages) if isinstance(m, Gap))
        assert isinstance(viewer.messages[gap_at + 1], GiftEvent)  # told before the events

        # Resuming from the old epoch: a gap and a fresh snapshot, even though seq 3 means
        # nothing in the new epoch; from the new one: exactly what was missed.
        stale = await open_client(server.ws_url, issuer.mint("x", "viewer"))
        current = await open_client(server.ws_url, issuer.mint("y", "viewer"))
        joined = await stale.join("r", 1, first.epoch)
        assert (joined.resume, joined.epoch, joined.seq) == ("gap", new, 2)
        assert joined.top[0].coins == 5
        joined = await current.join("r", 1, new)
        assert (joined.resume, joined.epoch) == ("ok", new)
        assert [e.seq for e in await current.wait_events(1)] == [2]
        await stale.close()
        await current.close()
    finally:
        await sender.close()
        await viewer.close()


async def test_a_seq_that_goes_back_under_the_same_epoch_starts_a_new_epoch(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    k = rt.keys
    await setup_room(rt, "r")
    await grant(rt, "s", 100)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"))
    try:
        await sender.join("r")
        first = await viewer.join("r")
        for i in range(5):
            await _gift(sender, f"a{i}")
        await viewer.wait_events(5)
        # The last three events' writes lost without a restart (a restore by hand): the same
        # epoch, the seq back at 2. The next event reuses seq 3 and its event id.
        await rt.redis.set(k.room_seq("r"), 2)
        entries = await rt.redis.xrange(k.room_history("r"))
        await rt.redis.xdel(k.room_history("r"), *[i for i, _e in entries[2:]])
        await _gift(sender, "reused")
        await viewer.wait(lambda _: _gaps(viewer))
        await _gift(sender, "after")
        events = await viewer.wait_events(6)
        (gap,) = _gaps(viewer)
        assert gap.epoch != first.epoch and gap.seq == 3
        # The event that reused (epoch, 3) is never shown; what follows is the new epoch's.
        assert [(e.epoch, e.seq) for e in events[5:]] == [(gap.epoch, 4)]
        assert len({e.eid for e in events}) == 6
        assert (await rt.redis.hget(k.room_epoch("r"), "id")).decode() == gap.epoch
    finally:
        await sender.close()
        await viewer.close()


async def test_a_made_up_resume_point_is_a_gap_and_starts_no_epoch(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "s", 100)
    sender = await open_client(server.ws_url, issuer.mint("s", "viewer"))
    try:
        first = await sender.join("r")
        await _gift(sender, "a")
        liar = await open_client(server.ws_url, issuer.mint("l", "viewer"))
        joined = await liar.join("r", 10**9, first.epoch)
        assert (joined.resume, joined.epoch, joined.seq) == ("gap", first.epoch, 1)
        made_up = await open_client(server.ws_url, issuer.mint("m", "viewer"))
        assert (await made_up.join("r", 0, "nosuchepoch")).resume == "gap"
        await _gift(sender, "b")
        assert [e.epoch for e in await sender.wait_events(2)] == [first.epoch] * 2
        assert _gaps(sender) == []
        await liar.close()
        await made_up.close()
    finally:
        await sender.close()
