"""Stable error codes, WebSocket close codes, and the one exception the protocol raises.

Codes are part of the wire contract: clients switch on them, so a code is never renamed or reused
for a different meaning. New codes may be added in v1; clients treat unknown codes as generic
failures.
"""

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from types import MappingProxyType


class ErrorCode(StrEnum):
    """The `code` of an `error` message."""

    # -- frame decoding and message validation (raised by protocol.codec) --
    MALFORMED_FRAME = "malformed_frame"
    """The frame is not valid msgpack/JSON (or not UTF-8, or has duplicate keys)."""
    FRAME_TOO_LARGE = "frame_too_large"
    """The frame exceeds the client frame size limit."""
    WRONG_FRAME_KIND = "wrong_frame_kind"
    """A text frame on the msgpack subprotocol, or a binary frame on the JSON one."""
    INVALID_MESSAGE = "invalid_message"
    """The frame is not a map, has no string `type`, or has non-string keys."""
    UNKNOWN_TYPE = "unknown_type"
    """The `type` names no client message."""
    UNKNOWN_FIELD = "unknown_field"
    """The message has a field its type does not define."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    WRONG_TYPE = "wrong_type"
    """A field has the wrong type (booleans are not integers, floats are not integers)."""
    OUT_OF_RANGE = "out_of_range"
    """A number is outside its allowed range (zero or huge counts, negative resume point)."""
    TOO_LONG = "too_long"
    """A string exceeds its length limit."""
    INVALID_VALUE = "invalid_value"
    """A string is empty or uses characters outside its allowed set."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """`hello.v` names a protocol version this server does not speak."""

    # -- session and server (raised by the server) --
    HELLO_REQUIRED = "hello_required"
    """A message other than `hello` arrived before the session was established."""
    UNAUTHORIZED = "unauthorized"
    """The token is missing, malformed or its signature is wrong."""
    TOKEN_EXPIRED = "token_expired"
    """The token's expiry has passed."""
    TOKEN_REVOKED = "token_revoked"
    """The token was revoked."""
    OVERLAY_KEY_INVALID = "overlay_key_invalid"
    """The overlay key is not (or no longer) the room's: rotated or revoked by the creator. Sent
    on `hello` and to open overlay sessions the moment the key changes; then closed with 4005."""
    FORBIDDEN = "forbidden"
    """The role may not do this (an overlay sending a gift, or joining another room)."""
    NOT_JOINED = "not_joined"
    """The request names a room this connection has not joined."""
    ALREADY_JOINED = "already_joined"
    """`join` for a room this connection is already in."""
    TOO_MANY_ROOMS = "too_many_rooms"
    """`join` would exceed the per-connection room limit."""
    ROOM_NOT_FOUND = "room_not_found"
    """No such room."""
    ROOM_ENDED = "room_ended"
    """The room's stream is over; gifts are no longer accepted."""
    UNKNOWN_GIFT = "unknown_gift"
    """The gift id is not in the catalog."""
    NOT_STREAKABLE = "not_streakable"
    """A `combo` was given for a gift that cannot be sent as a streak."""
    COMBO_NOT_FOUND = "combo_not_found"
    """`combo_end` for a combo that does not exist or has already settled, or a new click for a
    combo that has ended (nothing was spent; a retried click of it is acknowledged `duplicate`)."""
    COMBO_MISMATCH = "combo_mismatch"
    """A combo click names another room or gift than the combo's first click; nothing was spent."""
    INSUFFICIENT_FUNDS = "insufficient_funds"
    """The balance does not cover the gift; nothing was spent, and the tx id may be retried."""
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    """The gift would exceed the viewer's daily spending limit; nothing was spent."""
    WALLET_FROZEN = "wallet_frozen"
    """The wallet is frozen by an administrator; nothing was spent."""
    SELF_GIFT = "self_gift"
    """The sender owns the room: nobody may gift a room they own; nothing was spent."""
    BLOCKED = "blocked"
    """The room's creator or a moderator blocked this user in the room: gifts and joins there are
    refused (nothing spent); also sent without a request id to the user's sessions in the room
    the moment the block lands, which then are no longer in the room."""
    INVALID_DISPLAY_NAME = "invalid_display_name"
    """The token's display name breaks the display-name policy (length, characters)."""
    TX_CONFLICT = "tx_conflict"
    """The tx id was already used for a different gift (other room, gift, count or combo)."""
    RATE_LIMITED = "rate_limited"
    """Too many requests; retry after `retry_ms`."""
    HISTORY_GAP = "history_gap"
    """The resume point is older than the room's history (see `joined.resume`)."""
    INTERNAL_ERROR = "internal_error"
    """A server bug; the request may or may not have taken effect: retry with the same tx id."""
    UNAVAILABLE = "unavailable"
    """A backend is temporarily down; retry with the same tx id after `retry_ms`."""

    # -- HTTP API only (problem+json `code`; the HTTP API shares this list) --
    NOT_FOUND = "not_found"
    """No such route, or the resource the request names does not exist (HTTP 404)."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """The route exists but not with this method (HTTP 405)."""
    SANDBOX_DISABLED = "sandbox_disabled"
    """Sandbox receipts are refused outside development/demo mode (HTTP 403)."""
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    """A request head did not arrive whole in time; the connection is closed (HTTP 408)."""
    LENGTH_REQUIRED = "length_required"
    """A request body without `Content-Length` (chunked); the connection is closed (HTTP 411)."""
    HEADERS_TOO_LARGE = "headers_too_large"
    """A request head over its byte or line limit; the connection is closed (HTTP 431)."""
    ROOM_NOT_LIVE = "room_not_live"
    """A battle needs both rooms live, and one is not (HTTP 409)."""
    BATTLE_BUSY = "battle_busy"
    """A room of the battle is already in an open (invited, accepted or running) battle, or
    still settling one (HTTP 409)."""
    BATTLE_STATE = "battle_state"
    """The battle is not in a state that allows this (accepting a running one, starting one
    not accepted, cancelling one that ended) (HTTP 409)."""


class CloseCode(IntEnum):
    """WebSocket close codes the server sends."""

    NORMAL = 1000
    """The session ended normally."""
    GOING_AWAY = 1001
    """The server is draining (deploy, shutdown): reconnect, possibly to another server."""
    # 1002, 1007, 1008, 1009, 1012 and the keepalive's 1011 come from the WebSocket layer
    # (server/edge/transport/websocket.py and the sans-I/O frame parser), before the session.
    PROTOCOL_ERROR = 1002
    """A frame broke RFC 6455 (the WebSocket layer's parser refused it)."""
    INVALID_DATA = 1007
    """A text frame was not valid UTF-8 (the WebSocket layer refused it)."""
    POLICY_VIOLATION = 1008
    """WebSocket Ping frames beyond their budget (the WebSocket layer's limit)."""
    MESSAGE_TOO_BIG = 1009
    """A message beyond the size limit or its fragment limit; it was not read further."""
    INTERNAL_ERROR = 1011
    """The server hit an unexpected condition, or (reason `keepalive ping timeout`) the client did
    not answer a WebSocket Ping in time: reconnect with backoff."""
    SERVICE_RESTART = 1012
    """The server stopped without a drain (forced shutdown): reconnect with backoff."""
    UNAUTHORIZED = 4001
    """The token was missing, malformed or forged: do not reconnect with the same token."""
    PROTOCOL_VIOLATION = 4002
    """Too many invalid frames, or no `hello` first, or an unsupported version."""
    FORBIDDEN = 4003
    """The token does not allow this connection (wrong room or role)."""
    TOKEN_EXPIRED = 4004
    """The token expired or was revoked: get a new token, then reconnect."""
    OVERLAY_KEY_INVALID = 4005
    """The overlay key was rotated or revoked: show it and retry with backoff (the page's URL may
    be fixed by the creator, so an overlay keeps trying rather than giving up)."""
    TOO_SLOW = 4008
    """The client read too slowly and its buffer overflowed: reconnect and resume from last seq."""
    RATE_LIMITED = 4009
    """The client flooded the server: reconnect after a backoff."""
    IDLE_TIMEOUT = 4010
    """Nothing (not even a ping) arrived within the heartbeat allowance: reconnect."""
    HELLO_TIMEOUT = 4011
    """No `hello` arrived in time after connecting."""


# Errors after which the session cannot continue: the server sends the `error` message, then
# closes with this code, so a client can tell "fix the request" from "start over".
CLOSE_ON_ERROR: Mapping[ErrorCode, CloseCode] = MappingProxyType(
    {
        ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED: CloseCode.TOKEN_EXPIRED,
        ErrorCode.TOKEN_REVOKED: CloseCode.TOKEN_EXPIRED,
        ErrorCode.OVERLAY_KEY_INVALID: CloseCode.OVERLAY_KEY_INVALID,
        ErrorCode.INVALID_DISPLAY_NAME: CloseCode.UNAUTHORIZED,
        ErrorCode.UNSUPPORTED_VERSION: CloseCode.PROTOCOL_VIOLATION,
        ErrorCode.HELLO_REQUIRED: CloseCode.PROTOCOL_VIOLATION,
    }
)


class ProtocolError(Exception):
    """A request the protocol rejects; carries what the `error` reply needs.

    `request_id` is the offending message's `id` when it could be read, so the reply can echo it.
    """

    code: ErrorCode
    message: str
    request_id: str | None

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, {self.request_id!r})"
