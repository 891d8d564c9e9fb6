"""What docs/protocol.md promises a third-party client, against a real server (issue 16): which
error wins, combo counts and contiguous seqs, a resent click after its combo settled, and the
close codes the WebSocket layer sends on its own: 1011 (keepalive), 1007 (not UTF-8), 1002 (an
unmasked frame), 1012 (a shutdown without a drain)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis
from websockets.client import ClientProtocol
from websockets.frames import Close, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from protocol import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Ack,
    ComboEnd,
    ComboProgress,
    GiftEvent,
    Hello,
    Join,
    SendGift,
    codec_for,
)
from server.auth import TokenIssuer
from server.config import Config
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture
async def contract(config: Config, redis: Redis, pool: asyncpg.Pool
                   ) -> AsyncIterator[RunningServer]:
    cfg = dataclasses.replace(config, max_rooms_per_connection=2, rate_per_s=1e9,
                              rate_burst=10**9, ws_ping_interval_s=0.2,
                              # Generous: honest clients in the same loop must always make it.
                              ws_ping_timeout_s=1.0)
    async with inprocess_server(cfg) as running:
        yield running


async def _code(client: Client, msg: Join | SendGift | ComboEnd) -> str:
    await client.send(msg)
    reply = await client.reply(msg.id or "")
    return "ack" if isinstance(reply, Ack) else str(getattr(reply, "code", type(reply).__name__))


async def test_join_checks_run_in_the_documented_order(
    contract: RunningServer, issuer: TokenIssuer
) -> None:
    rt = contract.runtime
    await setup_room(rt, "a")
    await setup_room(rt, "b")
    c = await open_client(contract.ws_url, issuer.mint("u", "viewer"))
    overlay = await open_client(contract.ws_url, issuer.mint("o", "overlay", room="a"))
    try:
        assert await _code(c, Join(id="missing", room="nope")) == "room_not_found"
        await c.join("a")
        await c.join("b")
        # The case: past the room limit, a room that does not exist is still
        # too_many_rooms (checked without a round trip); already_joined comes before both.
        assert await _code(c, Join(id="third", room="nope")) == "too_many_rooms"
        assert await _code(c, Join(id="again", room="a")) == "already_joined"
        assert await _code(overlay, Join(id="other", room="nope")) == "forbidden"
    finally:
        await c.close()
        await overlay.close()


async def test_gift_checks_run_in_the_documented_order(
    contract: RunningServer, issuer: TokenIssuer
) -> None:
    rt = contract.runtime
    await setup_room(rt, "r")
    c = await open_client(contract.ws_url, issuer.mint("fan", "viewer"))
    overlay = await open_client(contract.ws_url, issuer.mint("o", "overlay", room="r"))
    try:
        assert await _code(overlay, SendGift(id="o", room="x", gift="nope", count=1, tx="o1")) \
            == "forbidden"
        # The balance is 0 throughout these: insufficient_funds always comes later.
        assert await _code(c, SendGift(id="g1", room="r", gift="nope", count=1, tx="t0")) \
            == "not_joined"
        await c.join("r")
        assert await _code(c, SendGift(id="g2", room="r", gift="nope", count=1, tx="t0")) \
            == "unknown_gift"
        assert await _code(c, SendGift(id="g3", room="r", gift="corgi", count=1, tx="t0",
                                       combo="c")) == "not_streakable"
        assert await _code(c, SendGift(id="g4", room="gone", gift="rose", count=1, tx="t0")) \
            == "not_joined"
        assert await _code(c, SendGift(id="g5", room="r", gift="rose", count=1, tx="t0")) \
            == "insufficient_funds"
        await grant(rt, "fan", 10)
        first = SendGift(id="g6", room="r", gift="rose", count=5, tx="t1")
        assert await _code(c, first) == "ack"
        assert await _code(c, SendGift(id="g7", room="r", gift="rose", count=5, tx="t2")) == "ack"
        # A replayed tx is answered from its record before the wallet is looked at again.
        await c.send(dataclasses.replace(first, id="g8"))
        replay = await c.reply("g8")
        assert isinstance(replay, Ack) and (replay.duplicate, replay.balance) == (True, 5)
        assert await _code(c, SendGift(id="g9", room="r", gift="rose", count=4, tx="t1")) \
            == "tx_conflict"
        assert await rt.components["wallet"].balance("fan") == 0
    finally:
        await c.close()
        await overlay.close()


async def test_clicks_of_count_two_count_in_twos_with_contiguous_seqs(
    contract: RunningServer, issuer: TokenIssuer
) -> None:
    rt = contract.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 100)
    c = await open_client(contract.ws_url, issuer.mint("fan", "viewer"))
    try:
        await c.join("r")
        for i in range(3):
            click = SendGift(id=f"k{i}", room="r", gift="finger_heart", count=2, tx=f"k{i}",
                             combo="c1")
            assert await _code(c, click) == "ack"
        assert await _code(c, ComboEnd(id="end", room="r", combo="c1")) == "ack"
        events = await c.wait_events(4)
        progress = [e for e in events if isinstance(e, ComboProgress)]
        (settled,) = [e for e in events if isinstance(e, GiftEvent)]
        assert [p.count for p in progress] == [2, 4, 6]
        assert (settled.combo, settled.count, settled.coins) == ("c1", 6, 30)  # 6 x 5 coins
        assert [e.seq for e in events] == [1, 2, 3, 4]
    finally:
        await c.close()


async def test_a_click_resent_after_its_combo_settled_is_a_replay_not_combo_not_found(
    contract: RunningServer, issuer: TokenIssuer
) -> None:
    rt = contract.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 10)
    c = await open_client(contract.ws_url, issuer.mint("fan", "viewer"))
    try:
        await c.join("r")
        click = SendGift(id="k1", room="r", gift="rose", count=1, tx="k1", combo="c1")
        assert await _code(c, click) == "ack"
        assert await _code(c, ComboEnd(id="end", room="r", combo="c1")) == "ack"
        # The client never saw its ack (say), resends the same click: it was spent, so it gets
        # the first result, not combo_not_found ("nothing spent").
        await c.send(dataclasses.replace(click, id="k1-again"))
        replay = await c.reply("k1-again")
        assert isinstance(replay, Ack) and (replay.duplicate, replay.balance) == (True, 9)
        fresh = SendGift(id="k2", room="r", gift="rose", count=1, tx="k2", combo="c1")
        assert await _code(c, fresh) == "combo_not_found"
        assert await rt.components["wallet"].balance("fan") == 9
    finally:
        await c.close()


async def _raw_session(url: str, subprotocol: str, first: bytes, *, text: bool = False,
                       raw: bool = False) -> tuple[list[Opcode], Close | None]:
    """A client that sends one frame after the handshake (`raw`: bytes written to the socket as
    they are) and then never writes again, so it answers no WebSocket Ping; returns the opcodes
    it received and the server's close."""
    proto = ClientProtocol(parse_uri(url), subprotocols=[Subprotocol(subprotocol)])
    uri = parse_uri(url)
    reader, writer = await asyncio.open_connection(uri.host, uri.port)
    proto.send_request(proto.connect())
    writer.write(b"".join(proto.data_to_send()))
    opcodes: list[Opcode] = []
    try:
        while True:
            data = await reader.read(65536)
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            for event in proto.events_received():
                if isinstance(event, Response):
                    assert event.status_code == 101, event.status_code
                    if raw:
                        writer.write(first)
                        continue
                    if text:
                        proto.send_text(first)  # bytes as they are: they may be bad UTF-8
                    else:
                        proto.send_binary(first)
                    writer.write(b"".join(proto.data_to_send()))
                else:
                    opcodes.append(event.opcode)
            if not data:
                return opcodes, proto.close_rcvd
    finally:
        writer.close()


async def test_an_unanswered_websocket_ping_closes_1011_and_an_answering_client_stays(
    contract: RunningServer, issuer: TokenIssuer
) -> None:
    # Connected first, with the same keepalive: had it not answered, it would close first.
    honest = await open_client(contract.ws_url, issuer.mint("h", "viewer"))
    hello = codec_for(SUBPROTOCOL_MSGPACK).encode_client(
        Hello(v=1, client="deaf", token=issuer.mint("d", "viewer")))
    try:
        opcodes, close = await _raw_session(contract.ws_url, SUBPROTOCOL_MSGPACK, hello)
        assert Opcode.PING in opcodes  # opcode 9, which the client never answered
        assert close is not None and (close.code, close.reason) == (1011,
                                                                     "keepalive ping timeout")
        assert honest.closed_code is None
    finally:
        await honest.close()


async def test_a_text_frame_that_is_not_utf8_closes_1007(contract: RunningServer) -> None:
    _, close = await _raw_session(contract.ws_url, SUBPROTOCOL_JSON, b'{"type":"\xff"}',
                                  text=True)
    assert close is not None and close.code == 1007


async def test_an_unmasked_frame_closes_1002(contract: RunningServer) -> None:
    # RFC 6455 5.1: a client MUST mask its frames; this empty binary frame is not masked.
    _, close = await _raw_session(contract.ws_url, SUBPROTOCOL_MSGPACK, b"\x82\x00", raw=True)
    assert close is not None and close.code == 1002


async def test_a_shutdown_without_a_drain_closes_1012(
    config: Config, redis: Redis, pool: asyncpg.Pool, issuer: TokenIssuer
) -> None:
    async with inprocess_server(config) as running:
        c = await open_client(running.ws_url, issuer.mint("u", "viewer"))
        assert running.server is not None
        running.server.should_exit = True  # uvicorn stops; the drain hook is not called
        assert await c.wait_closed() == 1012
