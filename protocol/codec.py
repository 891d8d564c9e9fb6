"""The two wire codecs, chosen by WebSocket subprotocol: msgpack (binary) and JSON (text).

Decoding client frames is the server's trust boundary: size first (cheap), then parse with hard
limits, then strict validation; the only exception that leaves is `ProtocolError`. Anything else
escaping `decode_client` is a bug.

Encoding is the fan-out hot path: the server encodes each event once with `encode` and batches
already-encoded messages per connection with `frame`, which concatenates bytes instead of encoding
again. A server frame is either one message (a map) or an array of messages.

A codec keeps a reusable msgpack packer: share one instance per thread (`codec_for`), never one
per connection.
"""

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final, Generic, TypeVar

import msgpack

# The message modules are imported for their registrations in CLIENT_MESSAGES / SERVER_MESSAGES.
from protocol import (  # noqa: F401
    battle_messages,
    client_messages,
    overlay_messages,
    room_messages,
    server_messages,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_CLIENT_FRAME_BYTES, MAX_JSON_DEPTH, MAX_SERVER_FRAME_BYTES
from protocol.message import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    ClientMessage,
    ServerMessage,
    readable_request_id,
)

SUBPROTOCOL_MSGPACK: Final = "giftwire.v1.msgpack"
SUBPROTOCOL_JSON: Final = "giftwire.v1.json"
# Server preference when a client offers both: msgpack is smaller and cheaper to encode.
SUBPROTOCOLS: Final = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)

F = TypeVar("F", bytes, str)

# Errors the parsers raise on bad input. RecursionError: deeply nested JSON arrays; msgpack's
# own errors are ValueError subclasses (ExtraData, FormatError, StackError, UnicodeDecodeError).
_PARSE_ERRORS = (ValueError, TypeError, RecursionError, msgpack.UnpackException)


class Codec(ABC, Generic[F]):
    """Encodes and decodes frames of one subprotocol; `F` is `bytes` or `str`."""

    subprotocol: str
    binary: bool  # True: send binary frames (bytes); False: text frames (str)

    # -- server side --

    def decode_client(self, data: bytes | str) -> ClientMessage:
        """Decode and strictly validate one client frame. Raises only `ProtocolError`."""
        return _validate_strict(self._load(data, MAX_CLIENT_FRAME_BYTES, strict=True))

    def encode(self, msg: ServerMessage) -> F:
        """Encode one server message; the result is a frame by itself or an item for `frame`."""
        return self._dump(msg.to_dict())

    @abstractmethod
    def frame(self, encoded: Sequence[F]) -> F:
        """A frame carrying already-encoded messages in order, without re-encoding them.

        One message is sent as itself; several as an array.
        """

    def encode_frame(self, msgs: Sequence[ServerMessage]) -> F:
        """Convenience: encode messages and frame them."""
        return self.frame([self.encode(msg) for msg in msgs])

    # -- client side (load tester, tests, other clients) --

    def encode_client(self, msg: ClientMessage) -> F:
        return self._dump(msg.to_dict())

    def decode_server(self, data: bytes | str) -> list[ServerMessage]:
        """Decode a server frame (one message or an array) leniently, as a v1 client must:
        unknown fields and unknown message types are skipped, types are still checked."""
        value = self._load(data, MAX_SERVER_FRAME_BYTES, strict=False)
        items = value if type(value) is list else [value]
        out: list[ServerMessage] = []
        for item in items:
            msg = _validate_lenient(item)
            if msg is not None:
                out.append(msg)
        return out

    # -- per format --

    def _load(self, data: bytes | str, limit: int, *, strict: bool) -> Any:
        if not isinstance(data, bytes | str):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame must be bytes or str")
        if isinstance(data, bytes) != self.binary:
            expected = "binary" if self.binary else "text"
            raise ProtocolError(
                ErrorCode.WRONG_FRAME_KIND, f"{self.subprotocol} expects {expected} frames"
            )
        if _frame_size(data, limit) > limit:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {limit} bytes")
        try:
            return self._parse(data, limit, strict=strict)
        except ProtocolError:
            raise
        except _PARSE_ERRORS as exc:
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, _describe(exc)) from exc

    @abstractmethod
    def _parse(self, data: Any, limit: int, *, strict: bool) -> Any: ...

    @abstractmethod
    def _dump(self, value: dict[str, Any]) -> F: ...


def _frame_size(data: bytes | str, limit: int) -> int:
    if isinstance(data, bytes):
        return len(data)
    # A str's UTF-8 size is at most 4x its length; only encode when that could exceed the limit.
    if len(data) * 4 <= limit:
        return len(data)
    try:
        return len(data.encode())
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame is not valid UTF-8") from None


def _describe(exc: BaseException) -> str:
    # Short and free of input echoes: the message goes back to a possibly hostile client.
    if isinstance(exc, UnicodeError):
        return "frame is not valid UTF-8"
    if isinstance(exc, RecursionError | msgpack.StackError):
        return "frame is nested too deeply"
    return f"frame could not be decoded ({type(exc).__name__})"


def _message_type(value: Any) -> str:
    if value is _NON_STRING_KEYS:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "map keys must be strings")
    if type(value) is not dict:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a map")
    kind = value.get("type")
    if type(kind) is not str:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message needs a string `type`")
    return kind


def _validate_strict(value: Any) -> ClientMessage:
    kind = _message_type(value)
    cls = CLIENT_MESSAGES.get(kind)
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind[:40]!r}",
            readable_request_id(value),
        )
    return cls.from_dict(value, strict=True)


def _validate_lenient(value: Any) -> ServerMessage | None:
    cls = SERVER_MESSAGES.get(_message_type(value))
    # Versioning rule: a v1 client ignores message types added after it was written.
    return None if cls is None else cls.from_dict(value, strict=False)


class _NonStringKeys:
    """Stands for a map with a non-string key. Raising at once would report `invalid_message`
    while the parser may still meet a decoding error later in the frame, which the documented
    order puts first; as a message this is `invalid_message`, as a field value `wrong_type`."""


_NON_STRING_KEYS: Final = _NonStringKeys()


def _pairs_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any] | _NonStringKeys:
    if not all(type(key) is str for key, _ in pairs):
        strings = [key for key, _ in pairs if type(key) is str]
        if len(set(strings)) != len(strings):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "duplicate key in map")
        return _NON_STRING_KEYS
    # Parsers disagree on which duplicate wins; rejecting them closes that ambiguity for good.
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "duplicate key in map")
    return out


_NO_BIN = "msgpack bin and ext values are not part of the protocol"


def _msgpack_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any] | _NonStringKeys:
    # max_bin_len=0 refuses every bin but the empty one, which arrives here as b"".
    for key, value in pairs:
        if type(key) is bytes or type(value) is bytes:
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, _NO_BIN)
    return _pairs_without_duplicates(pairs)


def _msgpack_list(items: list[Any]) -> list[Any]:
    if any(type(item) is bytes for item in items):
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, _NO_BIN)
    return items


def _refuse_ext(code: int, data: bytes) -> Any:
    # Empty ext values pass max_ext_len=0; this refuses them too.
    raise ProtocolError(ErrorCode.MALFORMED_FRAME, _NO_BIN)


class MsgpackCodec(Codec[bytes]):
    """`giftwire.v1.msgpack`: one msgpack value per binary frame; strings are UTF-8 str."""

    subprotocol = SUBPROTOCOL_MSGPACK
    binary = True

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)

    def _parse(self, data: bytes, limit: int, *, strict: bool) -> Any:
        # No value can be longer than the frame, so the frame size bounds every length; bin and
        # ext types (timestamps included) are not part of the protocol: malformed_frame, like
        # JSON's NaN. Non-string keys reach the hook (strict_map_key off) to be `invalid_message`.
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=not strict,
            use_list=True,
            max_str_len=limit,
            max_bin_len=0,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
            ext_hook=_refuse_ext,
            object_pairs_hook=_msgpack_pairs if strict else None,
            list_hook=_msgpack_list if strict else None,
        )
        if type(value) is bytes:
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, _NO_BIN)
        return value

    def _dump(self, value: dict[str, Any]) -> bytes:
        packed: bytes = self._packer.pack(value)
        return packed

    def frame(self, encoded: Sequence[bytes]) -> bytes:
        n = len(encoded)
        if n == 1:
            return encoded[0]
        if n == 0:
            raise ValueError("a frame needs at least one message")
        if n < 16:
            header = bytes((0x90 | n,))
        elif n < 1 << 16:
            header = b"\xdc" + n.to_bytes(2, "big")
        else:
            header = b"\xdd" + n.to_bytes(4, "big")
        return header + b"".join(encoded)


def _too_deep(value: Any) -> bool:
    # Iterative: the point is not to depend on the interpreter's recursion limit.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= MAX_JSON_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


# A JSON string, escapes included: brackets inside it are text, not nesting. Possessive, so a
# hostile body cannot make it backtrack.
_JSON_STRING: Final = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_ARRAY_RUN: Final = "[" * (MAX_JSON_DEPTH + 1)


def _brackets_too_deep(text: str) -> bool:
    """Before any parse, the usual shape of a nesting attack: more than `MAX_JSON_DEPTH` `[` in a
    row outside strings (one C-speed search; the strings are only stripped when one is found).
    Any other shape of deep nesting is still refused after the parse by `_too_deep`."""
    return _ARRAY_RUN in text and _ARRAY_RUN in _JSON_STRING.sub("", text)


def _reject_constant(name: str) -> Any:
    raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"{name} is not valid JSON")


class JsonCodec(Codec[str]):
    """`giftwire.v1.json`: one JSON value per text frame."""

    subprotocol = SUBPROTOCOL_JSON
    binary = False

    _strict_decoder = json.JSONDecoder(
        parse_constant=_reject_constant, object_pairs_hook=_pairs_without_duplicates
    )
    _lenient_decoder = json.JSONDecoder(parse_constant=_reject_constant)
    _encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def _parse(self, data: str, limit: int, *, strict: bool) -> Any:
        if not strict:
            return self._lenient_decoder.decode(data)
        # Counting brackets (C speed) clears every real request; only then is the text scanned,
        # before the parse: a hostile 2,000-deep body is refused without building 1,000 nested
        # lists for the parser's RecursionError (docs/protocol.md, "HTTP bodies").
        bracketed = data.count("[") + data.count("{") > MAX_JSON_DEPTH
        if bracketed and _brackets_too_deep(data):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame is nested too deeply")
        value = self._strict_decoder.decode(data)
        if bracketed and _too_deep(value):  # the parser is the authority on what a string is
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "frame is nested too deeply")
        return value

    def decode_map(self, data: bytes, limit: int) -> dict[str, Any]:
        """One JSON object from a source other than a frame (an HTTP body), under the client
        frames' rules: size, UTF-8, duplicate keys, no NaN/Infinity, nesting depth. Read its
        fields with a strict `FieldReader`. Raises only `ProtocolError`."""
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "the body is not valid UTF-8") from None
        value = self._load(text, limit, strict=True)
        if type(value) is not dict:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the body must be a JSON object")
        return value

    def _dump(self, value: dict[str, Any]) -> str:
        return self._encoder.encode(value)

    def frame(self, encoded: Sequence[str]) -> str:
        if len(encoded) == 1:
            return encoded[0]
        if not encoded:
            raise ValueError("a frame needs at least one message")
        return "[" + ",".join(encoded) + "]"


# Shared, because codecs hold no per-connection state and each msgpack packer owns a buffer that
# would otherwise be paid per connection; the server encodes each event once per codec anyway.
_SHARED: Final[dict[str, MsgpackCodec | JsonCodec]] = {
    SUBPROTOCOL_MSGPACK: MsgpackCodec(),
    SUBPROTOCOL_JSON: JsonCodec(),
}


def codec_for(subprotocol: str) -> MsgpackCodec | JsonCodec:
    """The shared codec of a negotiated subprotocol; `KeyError` if it is not one of ours.

    Shared instances are for one thread (the event loop); other threads construct their own.
    """
    return _SHARED[subprotocol]


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to accept from a client's offer, by server preference; None if none fits."""
    for candidate in SUBPROTOCOLS:
        if candidate in offered:
            return candidate
    return None
