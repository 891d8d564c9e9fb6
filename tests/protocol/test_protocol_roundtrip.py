"""Every message survives encode -> decode in both codecs and both directions, alone and batched."""

import json
from typing import Any

import msgpack
import pytest

from protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Ack,
    BalanceUpdate,
    BattleSide,
    BattleUpdate,
    ClientMessage,
    Codec,
    ComboEnd,
    ComboProgress,
    ErrorCode,
    ErrorReply,
    Gap,
    GiftEvent,
    Goal,
    GoalUpdate,
    GoingAway,
    Hello,
    Join,
    Joined,
    JsonCodec,
    Leaderboard,
    Leave,
    Left,
    MsgpackCodec,
    OverlaySettings,
    Ping,
    Pong,
    ProtocolError,
    Resume,
    Role,
    RoomStatus,
    SendGift,
    ServerMessage,
    TopEntry,
    ViewerCount,
    Welcome,
    codec_for,
    select_subprotocol,
)

CLIENT_SAMPLES: list[ClientMessage] = [
    Hello(v=1, client="test/1.0"),
    Hello(id="h1", v=1, client="наблюдатель 🎁", token="a.b.c"),
    Join(room="r1"),
    Join(id="j1", room="r1", after=0),
    Join(room="r1", after=2**53 - 1),
    Join(room="r1", after=7, epoch="3f9a0c1d2e4b"),
    Leave(room="r1"),
    Leave(id="l1", room="r1"),
    SendGift(room="r1", gift="rose", count=1, tx="t1"),
    SendGift(id="g1", room="r1", gift="rose", count=1000, tx="t-2", combo="c.1~x"),
    ComboEnd(room="r1", combo="c1"),
    ComboEnd(id="c", room="r1", combo="c1"),
    Ping(),
    Ping(id="p", t=1767225600000),
]

_TOP = (TopEntry(user="u1", name="Ann 🌹", coins=500), TopEntry(user="u2", name="", coins=0))
SERVER_SAMPLES: list[ServerMessage] = [
    Welcome(v=1, user="u1", role=Role.VIEWER, heartbeat_s=20, idle_timeout_s=60,
            server_time=1767225600000),
    Joined(room="r1", creator="u9", live=False, viewers=0, seq=0, epoch="e0", resume=Resume.NONE),
    Joined(
        id="j1",
        room="r1",
        creator="u9",
        live=True,
        viewers=12,
        top=_TOP,
        goal=Goal(title="Mic 🎤", target=100, progress=250),
        seq=99,
        epoch="3f9a0c1d2e4b",
        resume=Resume.GAP,
    ),
    Left(room="r1"),
    Left(id="l1", room="r1"),
    GiftEvent(
        room="r1", seq=1, epoch="x", eid="e1", sender="u1", name="Ann", gift="rose", count=1,
        coins=1, ts=1
    ),
    GiftEvent(
        room="r1",
        seq=2**53 - 1,
        epoch="3f9a0c1d2e4b",
        eid="e2",
        sender="u1",
        name="Ann",
        gift="heart",
        count=40,
        coins=400,
        combo="c1",
        ts=1767225600000,
    ),
    ComboProgress(
        room="r1", seq=3, epoch="x", eid="e3", combo="c1", sender="u1", name="A", gift="heart",
        count=2, ts=5
    ),
    Gap(room="r1", epoch="3f9a0c1d2e4b", seq=1759),
    Ack(tx="t1", balance=0, duplicate=False),
    Ack(id="g1", tx="t1", balance=10, duplicate=True),
    BalanceUpdate(balance=100, reason="purchase", version=3),
    BalanceUpdate(balance=0, reason="redeem", version=9, diamonds=1200),
    ViewerCount(room="r1", count=5),
    Leaderboard(room="r1", top=()),
    Leaderboard(room="r1", top=_TOP),
    GoalUpdate(room="r1", title="t", target=1, progress=0),
    RoomStatus(room="r1", live=True),
    OverlaySettings(room="r1", min_coins=0, alert_ms=1000, alerts=True, combos=False, top=True,
                    goal=False, ticker=True, sound=False, volume=0),
    ErrorReply(code=ErrorCode.INTERNAL_ERROR, message="boom"),
    ErrorReply(id="g1", code="rate_limited", message="slow down", tx="t1", room="r1", retry_ms=250),
    GoingAway(reason="drain", reconnect_ms=2000),
    Pong(server_time=7),
    Pong(id="p", t=5, server_time=7),
    BattleUpdate(
        room="r1", battle="b" * 32, phase="start", starts_at=1, ends_at=2,
        sides=(BattleSide(room="r1", creator="c1", score=0),
               BattleSide(room="r2", creator="c2", score=0)),
    ),
    BattleUpdate(
        room="r2", battle="b1", phase="end", starts_at=1, ends_at=2**53 - 1,
        sides=(BattleSide(room="r1", creator="c1", score=40, top=_TOP[0]),
               BattleSide(room="r2", creator="c2", score=7)),
        result="win", winner="r1",
    ),
]

AnyCodec = Codec[Any]
CODECS: list[AnyCodec] = [MsgpackCodec(), JsonCodec()]


def raw(codec: AnyCodec, value: Any) -> bytes | str:
    """Encode an arbitrary value, bypassing message classes, in the codec's frame kind."""
    return msgpack.packb(value) if codec.binary else json.dumps(value)


@pytest.fixture(params=CODECS, ids=lambda c: c.subprotocol)
def codec(request: pytest.FixtureRequest) -> AnyCodec:
    chosen: AnyCodec = request.param
    return chosen


def test_samples_cover_every_message_type() -> None:
    assert {m.TYPE for m in CLIENT_SAMPLES} == set(CLIENT_MESSAGES)
    assert {m.TYPE for m in SERVER_SAMPLES} == set(SERVER_MESSAGES)


@pytest.mark.parametrize("msg", CLIENT_SAMPLES, ids=repr)
def test_client_message_round_trip(codec: AnyCodec, msg: ClientMessage) -> None:
    assert codec.decode_client(codec.encode_client(msg)) == msg


@pytest.mark.parametrize("msg", SERVER_SAMPLES, ids=repr)
def test_server_message_round_trip(codec: AnyCodec, msg: ServerMessage) -> None:
    assert codec.decode_server(codec.encode(msg)) == [msg]


@pytest.mark.parametrize("msg", SERVER_SAMPLES, ids=repr)
def test_server_message_passes_strict_validation(msg: ServerMessage) -> None:
    # The server's own output obeys the limits it imposes on clients, so strict mode accepts it.
    assert type(msg).from_dict(msg.to_dict(), strict=True) == msg


@pytest.mark.parametrize("n", [2, 15, 16, 17, 300])
def test_batch_frame_round_trip(codec: AnyCodec, n: int) -> None:
    # Sizes straddle msgpack's fixarray (< 16 items) and array16 headers.
    msgs = [SERVER_SAMPLES[i % len(SERVER_SAMPLES)] for i in range(n)]
    frame = codec.frame([codec.encode(m) for m in msgs])
    assert codec.decode_server(frame) == msgs


@pytest.mark.parametrize("n", [65535, 65536])
def test_msgpack_batch_headers_for_huge_batches(n: int) -> None:
    # Beyond the server frame limit, so checked with plain msgpack: array16 ends, array32 begins.
    codec = MsgpackCodec()
    one = codec.encode(Pong(server_time=1))
    assert msgpack.unpackb(codec.frame([one] * n)) == [Pong(server_time=1).to_dict()] * n


def test_batch_frame_equals_encoding_the_list() -> None:
    # Concatenation must produce exactly what encoding the array at once would.
    msgs = SERVER_SAMPLES[:20]
    packed = MsgpackCodec().encode_frame(msgs)
    assert packed == msgpack.packb([m.to_dict() for m in msgs], use_bin_type=True)
    text = JsonCodec().encode_frame(msgs)
    assert json.loads(text) == [m.to_dict() for m in msgs]


def test_single_message_frame_is_the_message_itself(codec: AnyCodec) -> None:
    encoded = codec.encode(SERVER_SAMPLES[0])
    assert codec.frame([encoded]) == encoded


def test_empty_frame_is_a_programming_error(codec: AnyCodec) -> None:
    with pytest.raises(ValueError):
        codec.frame([])


def test_frame_kinds_match_subprotocols() -> None:
    assert isinstance(MsgpackCodec().encode(SERVER_SAMPLES[0]), bytes)
    assert isinstance(JsonCodec().encode(SERVER_SAMPLES[0]), str)
    assert MsgpackCodec().binary and not JsonCodec().binary


def test_none_optional_fields_are_left_out() -> None:
    assert Ping().to_dict() == {"type": "ping"}
    assert "combo" not in SERVER_SAMPLES[5].to_dict()
    assert "goal" not in SERVER_SAMPLES[1].to_dict()


def test_null_optional_field_reads_as_absent() -> None:
    msg = JsonCodec().decode_client('{"type":"join","room":"r1","after":null,"id":null}')
    assert msg == Join(room="r1")


def test_type_comes_first_on_the_wire() -> None:
    # Readers that peek at the first key (and humans reading logs) find the type there.
    for msg in SERVER_SAMPLES:
        assert next(iter(msg.to_dict())) == "type"


def test_decode_server_skips_unknown_types_and_fields(codec: AnyCodec) -> None:
    future = {"type": "sticker", "room": "r1"}
    newer_ack = {"type": "ack", "tx": "t1", "balance": 5, "duplicate": False, "bonus": 1}
    newer_role = {
        "type": "welcome",
        "v": 1,
        "user": "u",
        "role": "moderator",
        "heartbeat_s": 5,
        "idle_timeout_s": 15,
        "server_time": 1,
    }
    msgs = codec.decode_server(raw(codec, [future, newer_ack, newer_role]))
    assert msgs == [
        Ack(tx="t1", balance=5, duplicate=False),
        Welcome(v=1, user="u", role="moderator", heartbeat_s=5, idle_timeout_s=15, server_time=1),
    ]


def test_decode_server_still_checks_types(codec: AnyCodec) -> None:
    bad = raw(codec, {"type": "ack", "tx": "t1", "balance": "5", "duplicate": False})
    with pytest.raises(ProtocolError) as info:
        codec.decode_server(bad)
    assert info.value.code is ErrorCode.WRONG_TYPE


def test_subprotocol_selection() -> None:
    assert select_subprotocol([SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]) == SUBPROTOCOL_MSGPACK
    assert select_subprotocol(["chat", SUBPROTOCOL_JSON]) == SUBPROTOCOL_JSON
    assert select_subprotocol(["giftwire.v2.json"]) is None
    assert select_subprotocol([]) is None
    assert isinstance(codec_for(SUBPROTOCOL_MSGPACK), MsgpackCodec)
    assert isinstance(codec_for(SUBPROTOCOL_JSON), JsonCodec)
    with pytest.raises(KeyError):
        codec_for("giftwire.v2.json")


def test_error_reply_from_protocol_error() -> None:
    err = ProtocolError(ErrorCode.TOO_LONG, "room: longer than 64", "q1")
    reply = ErrorReply.from_error(err, room="r1")
    assert reply == ErrorReply(id="q1", code="too_long", message="room: longer than 64", room="r1")
    assert JsonCodec().encode(reply) == (
        '{"type":"error","id":"q1","code":"too_long","message":"room: longer than 64","room":"r1"}'
    )


def test_enum_values_encode_as_plain_strings() -> None:
    msg = SERVER_SAMPLES[0]
    assert msgpack.unpackb(MsgpackCodec().encode(msg))["role"] == "viewer"
    assert json.loads(JsonCodec().encode(msg))["role"] == "viewer"
