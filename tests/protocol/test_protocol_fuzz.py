"""Property tests: hostile input raises only ProtocolError, valid input always round-trips."""

import contextlib
import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    ClientMessage,
    ComboEnd,
    Hello,
    Join,
    JsonCodec,
    Leave,
    MsgpackCodec,
    Ping,
    ProtocolError,
    SendGift,
)
from protocol.limits import MAX_GIFT_COUNT, MAX_SAFE_INT

MP = MsgpackCodec()
JS = JsonCodec()

# No example database: a run never depends on examples saved by earlier runs on this machine.
fuzz = settings(
    max_examples=300, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Field names and types the decoder knows, so generated maps often get past the first checks and
# reach the field validators instead of stopping at `unknown_type`.
KNOWN_TYPES = sorted(set(CLIENT_MESSAGES) | set(SERVER_MESSAGES))
KNOWN_FIELDS = sorted(
    {
        name
        for table in (CLIENT_MESSAGES, SERVER_MESSAGES)
        for cls in table.values()
        for name in cls._FIELDS
    }
)

msgpack_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.binary(max_size=40)
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
)


def structures(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["type", *KNOWN_FIELDS]) | st.text(max_size=10)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=8),
        max_leaves=30,
    )


def message_like(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Maps with a real `type` and mostly real field names, values of any shape."""
    fields = st.dictionaries(
        st.sampled_from(KNOWN_FIELDS) | st.text(max_size=8), structures(leaves), max_size=8
    )
    return st.builds(lambda t, f: {"type": t, **f}, st.sampled_from(KNOWN_TYPES), fields)


def decodes_or_rejects(codec: MsgpackCodec | JsonCodec, data: bytes | str) -> None:
    try:
        msg = codec.decode_client(data)
    except ProtocolError as exc:
        assert exc.message
        return
    # Anything accepted must re-encode to a frame that decodes to the same message.
    assert isinstance(msg, ClientMessage)
    assert codec.decode_client(codec.encode_client(msg)) == msg


@fuzz
@given(st.binary(max_size=5000))
def test_random_bytes_msgpack(data: bytes) -> None:
    decodes_or_rejects(MP, data)


@fuzz
@given(st.text(max_size=2000))
def test_random_text_json(data: str) -> None:
    decodes_or_rejects(JS, data)


@fuzz
@given(structures(msgpack_leaves) | message_like(msgpack_leaves))
def test_random_msgpack_structures(value: Any) -> None:
    decodes_or_rejects(MP, msgpack.packb(value, use_bin_type=True))


@fuzz
@given(structures(json_leaves) | message_like(json_leaves))
def test_random_json_structures(value: Any) -> None:
    decodes_or_rejects(JS, json.dumps(value))


ids = st.from_regex(r"[A-Za-z0-9._~-]{1,32}", fullmatch=True)
safe_ints = st.integers(min_value=0, max_value=MAX_SAFE_INT)
optional_ids = st.none() | ids

valid_client_messages = st.one_of(
    st.builds(
        Hello,
        id=optional_ids,
        v=st.just(1),
        client=st.text(max_size=16),
        token=st.none() | st.text(max_size=100),
    ),
    st.builds(Join, id=optional_ids, room=ids, after=st.none() | safe_ints),
    st.builds(Leave, id=optional_ids, room=ids),
    st.builds(
        SendGift,
        id=optional_ids,
        room=ids,
        gift=ids,
        count=st.integers(min_value=1, max_value=MAX_GIFT_COUNT),
        tx=ids,
        combo=optional_ids,
    ),
    st.builds(ComboEnd, id=optional_ids, room=ids, combo=ids),
    st.builds(Ping, id=optional_ids, t=st.none() | safe_ints),
)


@fuzz
@given(valid_client_messages)
def test_valid_client_messages_round_trip(msg: ClientMessage) -> None:
    assert MP.decode_client(MP.encode_client(msg)) == msg
    assert JS.decode_client(JS.encode_client(msg)) == msg


@fuzz
@given(valid_client_messages, st.data())
def test_mutated_valid_frames(msg: ClientMessage, data: st.DataObject) -> None:
    # Corrupting one byte of a valid frame explores the edges of every field's encoding.
    frame = bytearray(MP.encode_client(msg))
    pos = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    frame[pos] = data.draw(st.integers(min_value=0, max_value=255))
    decodes_or_rejects(MP, bytes(frame))

    text = JS.encode_client(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    decodes_or_rejects(JS, text[:cut] + data.draw(st.text(max_size=5)) + text[cut:])


@fuzz
@given(st.binary(max_size=3000))
def test_random_bytes_server_side_decoder(data: bytes) -> None:
    # The client-side decoder faces a trusted server, but must still fail only with ProtocolError.
    with contextlib.suppress(ProtocolError):
        MP.decode_server(data)
