"""Server -> client messages about the session, the wallet and control flow.

Room messages (events, snapshots, room state) live in protocol.room_messages. Clients parse
server messages leniently (see protocol.fields), so fields typed `str` here may hold values a
later server version adds (new roles, new error codes).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Self

from protocol.errors import ProtocolError
from protocol.fields import FieldReader
from protocol.limits import MAX_REQUEST_ID_LEN, MAX_ROOM_ID_LEN, MAX_SAFE_INT, MAX_TX_ID_LEN
from protocol.message import ServerMessage, server_message


class Role(StrEnum):
    """Who a token speaks for (`welcome.role`)."""

    VIEWER = "viewer"
    CREATOR = "creator"
    OVERLAY = "overlay"
    ADMIN = "admin"


_ROLES = frozenset(Role)
_NON_NEGATIVE = (0, MAX_SAFE_INT)


def _request_id(r: FieldReader) -> str | None:
    return r.opt_ident("id", MAX_REQUEST_ID_LEN)


# -- session --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(ServerMessage):
    """Reply to `hello`: the session is open."""

    TYPE: ClassVar[str] = "welcome"
    v: int
    user: str
    role: str
    heartbeat_s: int
    # The silence after which the server closes with 4010; told rather than derived so the
    # operator's setting and what the client plans for cannot disagree.
    idle_timeout_s: int
    server_time: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            v=r.integer("v", 1, MAX_SAFE_INT),
            user=r.text("user"),
            role=r.choice("role", _ROLES),
            heartbeat_s=r.integer("heartbeat_s", 1, MAX_SAFE_INT),
            idle_timeout_s=r.integer("idle_timeout_s", 1, MAX_SAFE_INT),
            server_time=r.integer("server_time", *_NON_NEGATIVE),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Left(ServerMessage):
    """Reply to `leave`."""

    TYPE: ClassVar[str] = "left"
    id: str | None = None
    room: str

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(id=_request_id(r), room=r.ident("room", MAX_ROOM_ID_LEN))


# -- wallet --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(ServerMessage):
    """A gift was accepted (or had been: `duplicate` is true for a repeated tx id)."""

    TYPE: ClassVar[str] = "ack"
    id: str | None = None
    tx: str
    balance: int
    duplicate: bool = False

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            tx=r.ident("tx", MAX_TX_ID_LEN),
            balance=r.integer("balance", *_NON_NEGATIVE),
            duplicate=r.boolean("duplicate"),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceUpdate(ServerMessage):
    """The user's wallet changed (any cause, on any process), or a fresh read after the server
    may have missed changes (`reason` "sync"). `version` orders pushes of one wallet: a client
    drops one older than the last it applied. `diamonds` is present when it is known (credits,
    redemptions, syncs)."""

    TYPE: ClassVar[str] = "balance"
    balance: int
    reason: str
    version: int
    diamonds: int | None = None

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(balance=r.integer("balance", *_NON_NEGATIVE), reason=r.text("reason"),
                   version=r.integer("version", *_NON_NEGATIVE),
                   diamonds=r.opt_int("diamonds", *_NON_NEGATIVE))


# -- control --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply(ServerMessage):
    """A request failed (nothing changed) or the session is about to close.

    `tx` and `room` name what the error is about when the request had them, so clients that do
    not use request ids can still correlate; `retry_ms` says when retrying makes sense.
    """

    TYPE: ClassVar[str] = "error"
    id: str | None = None
    code: str
    message: str
    tx: str | None = None
    room: str | None = None
    retry_ms: int | None = None

    @classmethod
    def from_error(
        cls,
        error: ProtocolError,
        *,
        tx: str | None = None,
        room: str | None = None,
        retry_ms: int | None = None,
    ) -> Self:
        return cls(
            id=error.request_id,
            code=error.code.value,
            message=error.message,
            tx=tx,
            room=room,
            retry_ms=retry_ms,
        )

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            code=r.text("code"),
            message=r.text("message"),
            tx=r.opt_ident("tx", MAX_TX_ID_LEN),
            room=r.opt_ident("room", MAX_ROOM_ID_LEN),
            retry_ms=r.opt_int("retry_ms", *_NON_NEGATIVE),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class GoingAway(ServerMessage):
    """The server is draining: reconnect (elsewhere) within about `reconnect_ms`."""

    TYPE: ClassVar[str] = "going_away"
    reason: str
    reconnect_ms: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(reason=r.text("reason"), reconnect_ms=r.integer("reconnect_ms", *_NON_NEGATIVE))


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(ServerMessage):
    """Reply to `ping`, echoing its `t`."""

    TYPE: ClassVar[str] = "pong"
    id: str | None = None
    t: int | None = None
    server_time: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            id=_request_id(r),
            t=r.opt_int("t", *_NON_NEGATIVE),
            server_time=r.integer("server_time", *_NON_NEGATIVE),
        )
