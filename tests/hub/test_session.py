"""The /ws session end to end on a real in-process server: hello, join, gift, ack, fan-out."""

from __future__ import annotations

import pytest

from protocol import Ack, ErrorReply, GiftEvent, Leaderboard, SendGift
from server.auth import TokenIssuer
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import RunningServer

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def test_a_gift_reaches_every_member_with_ack_and_leaderboard(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r1")
    await grant(rt, "alice", 100)
    alice = await open_client(server.ws_url, issuer.mint("alice", "viewer"))
    bob = await open_client(server.ws_url, issuer.mint("bob", "viewer"), binary=False)
    try:
        ja = await alice.join("r1")
        jb = await bob.join("r1")
        assert ja.seq == jb.seq == 0 and ja.resume == "none" and ja.live
        await alice.send(SendGift(id="g1", room="r1", gift="rose", count=3, tx="tx1"))
        ack = await alice.reply("g1")
        assert isinstance(ack, Ack) and ack.balance == 97 and not ack.duplicate
        for c in (alice, bob):
            (ev,) = await c.wait_events(1)
            assert isinstance(ev, GiftEvent)
            assert (ev.seq, ev.sender, ev.gift, ev.count, ev.coins) == (1, "alice", "rose", 3, 3)
        top = await bob.wait(lambda ms: [m for m in ms if isinstance(m, Leaderboard)])
        assert top[-1].top[0].user == "alice" and top[-1].top[0].coins == 3
        # The same tx again: acknowledged as a duplicate, no second event, no second debit.
        await alice.send(SendGift(id="g2", room="r1", gift="rose", count=3, tx="tx1"))
        dup = await alice.reply("g2")
        assert isinstance(dup, Ack) and dup.duplicate and dup.balance == 97
        await alice.send(SendGift(id="g3", room="r1", gift="rose", count=1, tx="tx2"))
        await alice.reply("g3")
        evs = await bob.wait_events(2)
        assert [e.seq for e in evs] == [1, 2]
        # Errors carry the request id and a stable code.
        await alice.send(SendGift(id="g4", room="r1", gift="nope", count=1, tx="tx3"))
        err = await alice.reply("g4")
        assert isinstance(err, ErrorReply) and err.code == "unknown_gift" and err.tx == "tx3"
    finally:
        await alice.close()
        await bob.close()


async def test_names_beyond_ascii_reach_json_and_msgpack_clients_alike(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "zoe", 10)
    sender = await open_client(server.ws_url, issuer.mint("zoe", "viewer", name="Zoë 🎁 ∑"))
    as_json = await open_client(server.ws_url, issuer.mint("j", "viewer"), binary=False)
    as_msgpack = await open_client(server.ws_url, issuer.mint("m", "viewer"))
    try:
        for c in (sender, as_json, as_msgpack):
            await c.join("r")
        await sender.send(SendGift(id="g", room="r", gift="rose", count=1, tx="t"))
        await sender.reply("g")
        (a,) = await as_json.wait_events(1)
        (b,) = await as_msgpack.wait_events(1)
        assert a == b and a.name == "Zoë 🎁 ∑"
    finally:
        for c in (sender, as_json, as_msgpack):
            await c.close()
