"""giftwire's wire protocol, sans I/O: messages, codecs, validation, error codes.

No asyncio, no sockets, nothing from `server/`: the server, the load tester and the tests all
build on this package, and docs/protocol.md describes the same contract for other languages.

Typical server use::

    codec = codec_for(select_subprotocol(offered))   # one per connection or per thread
    msg = codec.decode_client(frame)                  # raises ProtocolError only
    data = codec.encode(GiftEvent(...))               # encode each event once...
    out = codec.frame([data, other])                  # ...and batch without re-encoding
"""

from protocol.battle_messages import BattlePhase, BattleResult, BattleSide, BattleUpdate
from protocol.client_messages import ComboEnd, Hello, Join, Leave, Ping, SendGift
from protocol.codec import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    codec_for,
    select_subprotocol,
)
from protocol.errors import CLOSE_ON_ERROR, CloseCode, ErrorCode, ProtocolError
from protocol.limits import PROTOCOL_VERSION
from protocol.message import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    ClientMessage,
    Message,
    ServerMessage,
)
from protocol.overlay_messages import OverlaySettings
from protocol.room_messages import (
    ComboProgress,
    Gap,
    GiftEvent,
    Goal,
    GoalUpdate,
    Joined,
    Leaderboard,
    Resume,
    RoomStatus,
    TopEntry,
    ViewerCount,
)
from protocol.server_messages import (
    Ack,
    BalanceUpdate,
    ErrorReply,
    GoingAway,
    Left,
    Pong,
    Role,
    Welcome,
)

__all__ = [
    "CLIENT_MESSAGES",
    "CLOSE_ON_ERROR",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Ack",
    "BalanceUpdate",
    "BattlePhase",
    "BattleResult",
    "BattleSide",
    "BattleUpdate",
    "ClientMessage",
    "CloseCode",
    "Codec",
    "ComboEnd",
    "ComboProgress",
    "ErrorCode",
    "ErrorReply",
    "Gap",
    "GiftEvent",
    "Goal",
    "GoalUpdate",
    "GoingAway",
    "Hello",
    "Join",
    "Joined",
    "JsonCodec",
    "Leaderboard",
    "Leave",
    "Left",
    "Message",
    "MsgpackCodec",
    "OverlaySettings",
    "Ping",
    "Pong",
    "ProtocolError",
    "Resume",
    "Role",
    "RoomStatus",
    "SendGift",
    "ServerMessage",
    "TopEntry",
    "ViewerCount",
    "Welcome",
    "codec_for",
    "select_subprotocol",
]
