"""Client -> server messages.

Every client message may carry `id`, a request id the server echoes in the reply (`joined`,
`left`, `ack`, `pong` or `error`) so a client can match replies to requests.
"""

from dataclasses import dataclass
from typing import ClassVar, Self

from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import FieldReader
from protocol.limits import (
    MAX_CLIENT_NAME_LEN,
    MAX_COMBO_ID_LEN,
    MAX_EPOCH_LEN,
    MAX_GIFT_COUNT,
    MAX_GIFT_ID_LEN,
    MAX_REQUEST_ID_LEN,
    MAX_ROOM_ID_LEN,
    MAX_SAFE_INT,
    MAX_TOKEN_LEN,
    MAX_TX_ID_LEN,
    SUPPORTED_VERSIONS,
)
from protocol.message import ClientMessage, client_message


def _request_id(r: FieldReader) -> str | None:
    return r.opt_ident("id", MAX_REQUEST_ID_LEN)


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(ClientMessage):
    """Opens the session; must be the first message. The token may come via `?token=` instead."""

    TYPE: ClassVar[str] = "hello"
    id: str | None = None
    v: int
    client: str
    token: str | None = None

    @classmethod
    def _preflight(cls, r: FieldReader) -> None:
        # Before unknown-field checks: a newer client's hello may well have fields we lack, and
        # "unsupported version" is the answer that tells it what to do.
        v = r.integer("v")
        if v not in SUPPORTED_VERSIONS:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"v: {v} is not supported (supported: {sorted(SUPPORTED_VERSIONS)})",
            )

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            v=r.integer("v"),
            client=r.text("client", MAX_CLIENT_NAME_LEN),
            token=r.opt_text("token", MAX_TOKEN_LEN),
        )


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Join(ClientMessage):
    """Enter a room; with `after` (and the `epoch` it belongs to), also replay every room event
    with `seq > after`, or be told `gap` when that position cannot be resumed."""

    TYPE: ClassVar[str] = "join"
    id: str | None = None
    room: str
    after: int | None = None
    epoch: str | None = None

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            room=r.ident("room", MAX_ROOM_ID_LEN),
            after=r.opt_int("after", 0, MAX_SAFE_INT),
            epoch=r.opt_ident("epoch", MAX_EPOCH_LEN),
        )


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Leave(ClientMessage):
    """Leave a room."""

    TYPE: ClassVar[str] = "leave"
    id: str | None = None
    room: str

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(id=_request_id(r), room=r.ident("room", MAX_ROOM_ID_LEN))


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class SendGift(ClientMessage):
    """Spend coins on `count` of a gift in a room. `tx` makes the request idempotent.

    `combo` marks a streak click: clicks sharing a combo id settle as one `gift` event.
    """

    TYPE: ClassVar[str] = "gift"
    id: str | None = None
    room: str
    gift: str
    count: int
    tx: str
    combo: str | None = None

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            room=r.ident("room", MAX_ROOM_ID_LEN),
            gift=r.ident("gift", MAX_GIFT_ID_LEN),
            count=r.integer("count", 1, MAX_GIFT_COUNT),
            tx=r.ident("tx", MAX_TX_ID_LEN),
            combo=r.opt_ident("combo", MAX_COMBO_ID_LEN),
        )


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class ComboEnd(ClientMessage):
    """The client stopped clicking: settle the combo now instead of at the server timeout."""

    TYPE: ClassVar[str] = "combo_end"
    id: str | None = None
    room: str
    combo: str

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            room=r.ident("room", MAX_ROOM_ID_LEN),
            combo=r.ident("combo", MAX_COMBO_ID_LEN),
        )


@client_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(ClientMessage):
    """Heartbeat; `t` (client clock, ms) is echoed in the `pong` for round-trip measurement."""

    TYPE: ClassVar[str] = "ping"
    id: str | None = None
    t: int | None = None

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(id=_request_id(r), t=r.opt_int("t", 0, MAX_SAFE_INT))
