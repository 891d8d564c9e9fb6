"""Every way a client frame can be wrong maps to its documented, stable error code."""

import json
from typing import Any

import msgpack
import pytest

from protocol import (
    Codec,
    ErrorCode,
    Hello,
    JsonCodec,
    MsgpackCodec,
    ProtocolError,
    SendGift,
)
from protocol.limits import MAX_CLIENT_FRAME_BYTES, MAX_GIFT_COUNT, MAX_SAFE_INT

AnyCodec = Codec[Any]
MP = MsgpackCodec()
JS = JsonCodec()

GIFT = {"type": "gift", "room": "r1", "gift": "rose", "count": 1, "tx": "t1"}
HELLO = {"type": "hello", "v": 1, "client": "test"}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def rejects(codec: AnyCodec, data: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode_client(data)
    return info.value


def encodings(value: Any) -> list[tuple[AnyCodec, bytes | str]]:
    return [(MP, msgpack.packb(value)), (JS, json.dumps(value))]


# (value, code): values representable in both msgpack and JSON, checked with both codecs.
VALUE_CASES: list[tuple[str, Any, ErrorCode]] = [
    ("array frame", [{"type": "ping"}], ErrorCode.INVALID_MESSAGE),
    ("number frame", 5, ErrorCode.INVALID_MESSAGE),
    ("string frame", "ping", ErrorCode.INVALID_MESSAGE),
    ("no type", {"t": 1}, ErrorCode.INVALID_MESSAGE),
    ("int type", {"type": 1}, ErrorCode.INVALID_MESSAGE),
    ("null type", {"type": None}, ErrorCode.INVALID_MESSAGE),
    ("server type", {"type": "pong", "server_time": 1}, ErrorCode.UNKNOWN_TYPE),
    ("empty type", {"type": ""}, ErrorCode.UNKNOWN_TYPE),
    ("case matters", {"type": "PING"}, ErrorCode.UNKNOWN_TYPE),
    ("client-set price", with_(GIFT, price=0), ErrorCode.UNKNOWN_FIELD),
    ("extra ping field", {"type": "ping", "x": 1}, ErrorCode.UNKNOWN_FIELD),
    ("no tx", with_(GIFT, tx=...), ErrorCode.MISSING_FIELD),
    ("null room", with_(GIFT, room=None), ErrorCode.MISSING_FIELD),
    ("no hello v", with_(HELLO, v=...), ErrorCode.MISSING_FIELD),
    ("no hello client", with_(HELLO, client=...), ErrorCode.MISSING_FIELD),
    ("bool count", with_(GIFT, count=True), ErrorCode.WRONG_TYPE),
    ("float count", with_(GIFT, count=1.0), ErrorCode.WRONG_TYPE),
    ("string count", with_(GIFT, count="1"), ErrorCode.WRONG_TYPE),
    ("int room", with_(GIFT, room=7), ErrorCode.WRONG_TYPE),
    ("list room", with_(GIFT, room=["r1"]), ErrorCode.WRONG_TYPE),
    ("map combo", with_(GIFT, combo={"a": 1}), ErrorCode.WRONG_TYPE),
    ("bool after", {"type": "join", "room": "r", "after": False}, ErrorCode.WRONG_TYPE),
    ("int request id", {"type": "ping", "id": 5}, ErrorCode.WRONG_TYPE),
    ("string hello v", with_(HELLO, v="1"), ErrorCode.WRONG_TYPE),
    ("zero count", with_(GIFT, count=0), ErrorCode.OUT_OF_RANGE),
    ("negative count", with_(GIFT, count=-1), ErrorCode.OUT_OF_RANGE),
    ("count over max", with_(GIFT, count=MAX_GIFT_COUNT + 1), ErrorCode.OUT_OF_RANGE),
    ("int64 count", with_(GIFT, count=2**63 - 1), ErrorCode.OUT_OF_RANGE),
    ("uint64 count", with_(GIFT, count=2**64 - 1), ErrorCode.OUT_OF_RANGE),
    ("negative after", {"type": "join", "room": "r", "after": -1}, ErrorCode.OUT_OF_RANGE),
    (
        "unsafe after",
        {"type": "join", "room": "r", "after": MAX_SAFE_INT + 1},
        ErrorCode.OUT_OF_RANGE,
    ),
    ("negative ping t", {"type": "ping", "t": -5}, ErrorCode.OUT_OF_RANGE),
    ("long room", with_(GIFT, room="r" * 65), ErrorCode.TOO_LONG),
    ("long gift", with_(GIFT, gift="g" * 33), ErrorCode.TOO_LONG),
    ("long tx", with_(GIFT, tx="t" * 65), ErrorCode.TOO_LONG),
    ("long combo", with_(GIFT, combo="c" * 65), ErrorCode.TOO_LONG),
    ("long request id", {"type": "ping", "id": "i" * 65}, ErrorCode.TOO_LONG),
    ("long client", with_(HELLO, client="x" * 65), ErrorCode.TOO_LONG),
    # 33 characters but 66 bytes: limits count bytes.
    ("long client bytes", with_(HELLO, client="é" * 33), ErrorCode.TOO_LONG),
    ("empty room", with_(GIFT, room=""), ErrorCode.INVALID_VALUE),
    ("space in room", with_(GIFT, room="r 1"), ErrorCode.INVALID_VALUE),
    ("hash tag in room", with_(GIFT, room="{r1}"), ErrorCode.INVALID_VALUE),
    ("slash in gift", with_(GIFT, gift="ro/se"), ErrorCode.INVALID_VALUE),
    ("non-ascii tx", with_(GIFT, tx="tü"), ErrorCode.INVALID_VALUE),
    ("newline in id", {"type": "ping", "id": "a\n"}, ErrorCode.INVALID_VALUE),
    ("future version", with_(HELLO, v=2), ErrorCode.UNSUPPORTED_VERSION),
    ("version zero", with_(HELLO, v=0), ErrorCode.UNSUPPORTED_VERSION),
    # A newer client's hello has fields we lack; the version is the useful answer.
    ("future hello", with_(HELLO, v=2, caps=["x"]), ErrorCode.UNSUPPORTED_VERSION),
    # The documented order: unknown fields before field errors.
    ("unknown beats wrong type", with_(GIFT, count="x", extra=1), ErrorCode.UNKNOWN_FIELD),
]


@pytest.mark.parametrize(("name", "value", "code"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_value_cases(name: str, value: Any, code: ErrorCode) -> None:
    for codec, data in encodings(value):
        assert rejects(codec, data).code is code, codec.subprotocol


# Frames only one of the encodings can express.
RAW_CASES: list[tuple[str, AnyCodec, Any, ErrorCode]] = [
    ("msgpack reserved byte", MP, b"\xc1", ErrorCode.MALFORMED_FRAME),
    ("msgpack truncated", MP, msgpack.packb(GIFT)[:-3], ErrorCode.MALFORMED_FRAME),
    ("msgpack two values", MP, msgpack.packb(GIFT) * 2, ErrorCode.MALFORMED_FRAME),
    ("msgpack empty", MP, b"", ErrorCode.MALFORMED_FRAME),
    ("msgpack bad utf-8", MP, b"\x81\xa4type\xa2\xff\xfe", ErrorCode.MALFORMED_FRAME),
    (
        "msgpack ext",
        MP,
        b"\x82\xa4type\xa4ping\xa1t\xd6\xff\x00\x00\x00\x01",
        ErrorCode.MALFORMED_FRAME,
    ),
    ("msgpack deep nesting", MP, b"\x91" * 3000 + b"\x00", ErrorCode.MALFORMED_FRAME),
    # docs/protocol.md section 6: a non-string key is `invalid_message` (valid msgpack, not a
    # message); any bin or ext value, key or element, even empty, is `malformed_frame`.
    ("msgpack int key", MP, b"\x82\xa4type\xa4ping\x01\x02", ErrorCode.INVALID_MESSAGE),
    ("msgpack nil key", MP, b"\x82\xa4type\xa4ping\xc0\x02", ErrorCode.INVALID_MESSAGE),
    ("msgpack int key in a field", MP, b"\x82\xa4type\xa4ping\xa2id\x81\x01\x02",
     ErrorCode.WRONG_TYPE),
    ("msgpack empty bin value", MP, b"\x82\xa4type\xa4ping\xa2id\xc4\x00",
     ErrorCode.MALFORMED_FRAME),
    ("msgpack bin in an array", MP, b"\x82\xa4type\xa4ping\xa2id\x91\xc4\x00",
     ErrorCode.MALFORMED_FRAME),
    ("msgpack bin frame", MP, b"\xc4\x00", ErrorCode.MALFORMED_FRAME),
    ("msgpack empty ext", MP, b"\x82\xa4type\xa4ping\xa1t\xc7\x00\x05",
     ErrorCode.MALFORMED_FRAME),
    # Decoding errors come before message errors, wherever the parser meets them.
    ("msgpack int key, then bin", MP, b"\x82\x01\x02\xa4type\xc4\x01p",
     ErrorCode.MALFORMED_FRAME),
    (
        "msgpack duplicate key",
        MP,
        b"\x82\xa4type\xa4ping\xa4type\xa4ping",
        ErrorCode.MALFORMED_FRAME,
    ),
    ("msgpack bin key", MP, b"\x82\xa4type\xa4ping\xc4\x01t\x01", ErrorCode.MALFORMED_FRAME),
    ("msgpack bin room", MP, msgpack.packb(with_(GIFT, room=b"r1")), ErrorCode.MALFORMED_FRAME),
    ("msgpack float nan", MP, msgpack.packb(with_(GIFT, count=float("nan"))), ErrorCode.WRONG_TYPE),
    ("json syntax", JS, '{"type":"ping"', ErrorCode.MALFORMED_FRAME),
    ("json empty", JS, "", ErrorCode.MALFORMED_FRAME),
    ("json trailing data", JS, '{"type":"ping"} {}', ErrorCode.MALFORMED_FRAME),
    ("json NaN", JS, '{"type":"ping","t":NaN}', ErrorCode.MALFORMED_FRAME),
    ("json Infinity", JS, '{"type":"ping","t":-Infinity}', ErrorCode.MALFORMED_FRAME),
    ("json duplicate key", JS, '{"type":"ping","type":"ping"}', ErrorCode.MALFORMED_FRAME),
    ("json lone surrogate", JS, '{"type":"ping","id":"\\ud800"}', ErrorCode.MALFORMED_FRAME),
    ("json raw surrogate", JS, '{"type":"ping","id":"\ud800"}', ErrorCode.MALFORMED_FRAME),
    ("json deep nesting", JS, "[" * 4000 + "]" * 4, ErrorCode.MALFORMED_FRAME),
    # MAX_JSON_DEPTH (16) counts the message map: 1 + 16 arrays is past it, 1 + 15 is not.
    ("json past MAX_JSON_DEPTH", JS, '{"type":"ping","t":' + "[" * 16 + "]" * 16 + "}",
     ErrorCode.MALFORMED_FRAME),
    ("json at MAX_JSON_DEPTH", JS, '{"type":"ping","t":' + "[" * 15 + "]" * 15 + "}",
     ErrorCode.WRONG_TYPE),
    ("json exponent int", JS, '{"type":"join","room":"r","after":1e3}', ErrorCode.WRONG_TYPE),
    ("json huge float", JS, '{"type":"join","room":"r","after":1e999}', ErrorCode.WRONG_TYPE),
    (
        "json huge int",
        JS,
        '{"type":"join","room":"r","after":' + "9" * 400 + "}",
        ErrorCode.OUT_OF_RANGE,
    ),
    ("text on msgpack", MP, json.dumps(GIFT), ErrorCode.WRONG_FRAME_KIND),
    ("binary on json", JS, json.dumps(GIFT).encode(), ErrorCode.WRONG_FRAME_KIND),
    ("bytearray", MP, bytearray(msgpack.packb(GIFT)), ErrorCode.MALFORMED_FRAME),
    ("msgpack too large", MP, b"\x00" * (MAX_CLIENT_FRAME_BYTES + 1), ErrorCode.FRAME_TOO_LARGE),
    ("json too large", JS, " " * (MAX_CLIENT_FRAME_BYTES + 1), ErrorCode.FRAME_TOO_LARGE),
    # 1,025 characters but 4,100 bytes: the frame limit counts bytes.
    ("json too large in bytes", JS, "🎁" * 1025, ErrorCode.FRAME_TOO_LARGE),
]


@pytest.mark.parametrize(
    ("name", "codec", "data", "code"), RAW_CASES, ids=[c[0] for c in RAW_CASES]
)
def test_raw_cases(name: str, codec: AnyCodec, data: bytes | str, code: ErrorCode) -> None:
    assert rejects(codec, data).code is code


def test_every_validation_code_is_exercised() -> None:
    reached = {c[2] for c in VALUE_CASES} | {c[3] for c in RAW_CASES}
    validation_codes = {
        ErrorCode.MALFORMED_FRAME,
        ErrorCode.FRAME_TOO_LARGE,
        ErrorCode.WRONG_FRAME_KIND,
        ErrorCode.INVALID_MESSAGE,
        ErrorCode.UNKNOWN_TYPE,
        ErrorCode.UNKNOWN_FIELD,
        ErrorCode.MISSING_FIELD,
        ErrorCode.WRONG_TYPE,
        ErrorCode.OUT_OF_RANGE,
        ErrorCode.TOO_LONG,
        ErrorCode.INVALID_VALUE,
        ErrorCode.UNSUPPORTED_VERSION,
    }
    assert validation_codes <= reached


@pytest.mark.parametrize("codec", [MP, JS], ids=lambda c: c.subprotocol)
def test_frame_of_exactly_the_limit_is_accepted(codec: AnyCodec) -> None:
    def size(token: str) -> int:
        data = codec.encode_client(Hello(v=1, client="x", token=token))
        return len(data) if isinstance(data, bytes) else len(data.encode())

    # Start past 255 characters so msgpack's str header is already at its final (str16) width.
    token = "t" * 300
    while size(token) < MAX_CLIENT_FRAME_BYTES:
        token += "t" * (MAX_CLIENT_FRAME_BYTES - size(token))
    assert size(token) == MAX_CLIENT_FRAME_BYTES
    data = codec.encode_client(Hello(v=1, client="x", token=token))
    assert codec.decode_client(data) == Hello(v=1, client="x", token=token)
    assert rejects(codec, data + (b" " if codec.binary else " ")).code is ErrorCode.FRAME_TOO_LARGE


def test_token_limit_applies_outside_frames() -> None:
    # The limit also guards `?token=`, so it is checked even where the frame limit binds first.
    with pytest.raises(ProtocolError) as info:
        Hello.from_dict({"type": "hello", "v": 1, "client": "x", "token": "t" * 4097})
    assert info.value.code is ErrorCode.TOO_LONG


@pytest.mark.parametrize("codec", [MP, JS], ids=lambda c: c.subprotocol)
def test_error_carries_the_request_id_when_readable(codec: AnyCodec) -> None:
    (_, data), (_, text) = encodings(with_(GIFT, count=0, id="req-7"))
    err = rejects(codec, data if codec.binary else text)
    assert (err.code, err.request_id) == (ErrorCode.OUT_OF_RANGE, "req-7")

    (_, data), (_, text) = encodings({"type": "nope", "id": "req-8"})
    assert rejects(codec, data if codec.binary else text).request_id == "req-8"

    (_, data), (_, text) = encodings(with_(GIFT, count=0, id="not valid"))
    assert rejects(codec, data if codec.binary else text).request_id is None


def test_valid_limits_are_inclusive() -> None:
    msg = MP.decode_client(
        msgpack.packb(
            with_(GIFT, room="r" * 64, gift="g" * 32, tx="t" * 64, combo="c" * 64, count=1000)
        )
    )
    assert msg == SendGift(room="r" * 64, gift="g" * 32, tx="t" * 64, combo="c" * 64, count=1000)
    assert JS.decode_client('{"type":"hello","v":1,"client":"' + "é" * 32 + '"}') == Hello(
        v=1, client="é" * 32
    )


def test_protocol_error_shape() -> None:
    err = ProtocolError(ErrorCode.TOO_LONG, "room: longer than 64", "r1")
    assert (err.code, err.message, err.request_id) == (
        ErrorCode.TOO_LONG,
        "room: longer than 64",
        "r1",
    )
    assert str(err) == "too_long: room: longer than 64"


def test_http_bodies_decode_under_the_frame_rules() -> None:
    """`JsonCodec.decode_map` (HTTP bodies) applies the client frames' rules, one code each."""
    js = JS
    assert js.decode_map(b'{"count":1,"room":"r"}', 64) == {"count": 1, "room": "r"}
    cases = [
        (b'{"count":1,"count":1000}', ErrorCode.MALFORMED_FRAME),  # duplicate key
        (b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}", ErrorCode.FRAME_TOO_LARGE),
        (b"[]", ErrorCode.INVALID_MESSAGE),
        (b'{"a":NaN}', ErrorCode.MALFORMED_FRAME),
        (b'{"a":"\xff"}', ErrorCode.MALFORMED_FRAME),
        (b"{", ErrorCode.MALFORMED_FRAME),
    ]
    for body, code in cases:
        with pytest.raises(ProtocolError) as info:
            js.decode_map(body, 64)
        assert info.value.code is code, body[:40]
    deep = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    with pytest.raises(ProtocolError) as info:
        js.decode_map(deep, 16 * 1024)
    assert info.value.code is ErrorCode.MALFORMED_FRAME
