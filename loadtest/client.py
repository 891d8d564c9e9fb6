"""One simulated viewer, sender or overlay: a giftwire session over one WebSocket.

The hot path is `_on_frame`: every room event lands here once per member, so it records
`(seq, receive time)` into flat arrays and validates an event through `protocol` only the first
time this process sees it (the bytes are identical for every member; validating each copy would
make the load generator, not the server, the limit). Everything else goes through the codec.

A sender keeps one gift in flight: the k-th plain gift event from a sender is then its k-th
accepted plain gift, which is how the parent ties receive times to send times without the server
echoing the transaction id in the event.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from loadtest.wsclient import WsConnection, connect
from protocol import (
    SERVER_MESSAGES,
    SUBPROTOCOL_MSGPACK,
    ErrorReply,
    Hello,
    Join,
    Joined,
    MsgpackCodec,
    SendGift,
)
from protocol.client_messages import ComboEnd
from protocol.limits import MAX_SERVER_FRAME_BYTES

EVENT_TYPES = frozenset(("gift", "combo"))
# Room state pushes, counted (issue 13: their share of what members get) but not decoded.
STATE_TYPES = frozenset(("viewers", "leaderboard", "goal"))
# What every worker (and the final probe) counts; `state`: STATE_TYPES messages received.
COUNTERS = ("sent", "accepted", "rejected", "received", "closed", "other_errors", "frames",
            "state")
# Room state a simulated viewer does not act on: skipped unread (a leaderboard decoded at every
# member costs the load generator more than the server spends sending it).
IGNORED_TYPES = frozenset(("viewers", "leaderboard", "goal", "room", "pong", "balance"))
# Outcome codes in the send log: small ints keep the arrays flat; errors get codes from 2 up.
ACCEPTED, DUPLICATE = 0, 1
# The answer that leaves a gift's outcome open: the client must send the same tx again.
RETRY_SAME_TX = "unavailable"
SLOW_RCVBUF = 4096  # a stalled phone's small window (the kernel doubles and floors it)


@dataclass(frozen=True, slots=True)
class ConnSpec:
    user: str
    token: str
    room: str
    overlay: bool = False
    sender: bool = False
    slow: bool = False


@dataclass(slots=True)
class RoomLog:
    """What this process learnt about a room's events: seq -> (eid, type, sender, combo, count).
    No scenario restarts Redis, so a room keeps one epoch for a run: one seq seen with two eids
    (eids are <room>-<epoch>-<seq>) is a broken order, or a history restarted mid-run."""

    events: dict[int, tuple[str, str, str, str | None, int]] = field(default_factory=dict)
    conflicts: int = 0  # one seq seen with two different eids


@dataclass(slots=True)
class Shared:
    """State shared by every member in one worker process."""

    codec: MsgpackCodec
    rooms: dict[str, RoomLog]
    errors: dict[str, int]  # error code -> index in the send log
    counters: dict[str, int]
    on_change: Callable[[], None]
    heartbeat_s: float = 0.0  # from the first `welcome`

    def error_index(self, code: str) -> int:
        idx = self.errors.get(code)
        if idx is None:
            idx = self.errors[code] = len(self.errors) + 2
        return idx


def new_counters() -> dict[str, int]:
    """The counters a `Shared` must start with: every one its members add to, so the load
    generator's processes and the final-seq probe cannot drift apart (a probe without "frames"
    failed on its first frame, and the verification fell back to the highest seq seen)."""
    return dict.fromkeys(COUNTERS, 0)


class SessionError(Exception):
    pass


class Member:
    __slots__ = (
        "_ack", "_joined", "_reply", "closes", "combo", "conn", "epoch", "gap", "joined_seq",
        "last_seq", "pending", "recv_seq", "recv_t", "retry_ms", "send_ack", "send_code",
        "send_kind", "send_t", "sent", "shared", "spec", "url",
    )

    def __init__(self, spec: ConnSpec, url: str, shared: Shared) -> None:
        self.spec = spec
        self.url = url
        self.shared = shared
        self.conn: WsConnection | None = None
        self.joined_seq = -1
        self.last_seq = 0
        self.epoch = ""  # the room's epoch: last_seq counts within it
        self.gap = False
        self.closes: list[int | None] = []
        self.recv_seq = array("q")
        self.recv_t = array("d")
        # Send log, one row per transaction: time sent, time answered (nan: never), outcome, kind.
        self.send_t = array("d")
        self.send_ack = array("d")
        self.send_code = array("b")
        self.send_kind = array("b")  # 0 plain, 1 combo click, 2 big
        self.sent = 0
        self.pending: tuple[bytes, int] | None = None  # (frame, row) of the gift in flight
        self.retry_ms = 0  # the server answered `unavailable`: resend the same tx after this
        self.combo: tuple[str, str, int] | None = None  # (combo id, gift, clicks left)
        self._reply: asyncio.Future[Any] | None = None
        self._ack: asyncio.Future[None] | None = None
        self._joined = False

    # -- session --

    async def open(self, timeout: float) -> None:
        """Connect, hello, join (resuming after `last_seq` when this is a reconnect)."""
        loop = asyncio.get_running_loop()
        self._reply = loop.create_future()
        self._joined = False
        self.conn = await connect(
            self.url, SUBPROTOCOL_MSGPACK, self._on_frame, self._on_close, timeout,
            rcvbuf=SLOW_RCVBUF if self.spec.slow else None,
        )
        codec = self.shared.codec
        self.conn.send(codec.encode_client(Hello(v=1, client="giftwire-loadtest",
                                                 token=self.spec.token)))
        welcome = await asyncio.wait_for(self._reply, timeout)
        if isinstance(welcome, ErrorReply):
            raise SessionError(f"hello refused: {welcome.code}: {welcome.message}")
        self.shared.heartbeat_s = self.shared.heartbeat_s or float(welcome.heartbeat_s)
        self._reply = loop.create_future()
        resume = self.joined_seq >= 0
        self.conn.send(codec.encode_client(Join(
            id="j", room=self.spec.room, after=self.last_seq if resume else None,
            epoch=self.epoch if resume else None,
        )))
        joined = await asyncio.wait_for(self._reply, timeout)
        self._reply = None
        if isinstance(joined, ErrorReply):
            raise SessionError(f"join {self.spec.room} refused: {joined.code}: {joined.message}")
        assert isinstance(joined, Joined)
        self._joined = True
        if self.joined_seq < 0:
            self.joined_seq = self.last_seq = joined.seq
        elif joined.resume != "ok":
            self.gap = True  # missed events are gone; counted, and this member leaves the tally
            self.last_seq = joined.seq
        self.epoch = joined.epoch

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    @property
    def connected(self) -> bool:
        """In the room: connected, hello answered and the join replied to."""
        return self._joined and self.conn is not None and self.conn.is_open

    # -- gifts --

    def send_gift(self, gift: str, count: int, coins_kind: int, combo: str | None = None) -> bool:
        """Send one gift (one transaction); False if the connection is gone."""
        row = len(self.send_t)
        tx = f"{self.spec.user}.{row}"
        frame = self.shared.codec.encode_client(
            SendGift(id=str(row), room=self.spec.room, gift=gift, count=count, tx=tx, combo=combo)
        )
        self.send_t.append(time.monotonic())
        self.send_ack.append(float("nan"))
        self.send_code.append(-1)
        self.send_kind.append(coins_kind)
        self.pending = (frame, row)
        self._ack = asyncio.get_running_loop().create_future()
        self.shared.counters["sent"] += 1
        if self.conn is not None and self.conn.send(frame):
            return True
        self._ack.set_result(None)  # never sent: nobody would answer; the row stays unanswered
        return False

    def resend_pending(self) -> None:
        """After a reconnect: the same transaction id again (the server must not spend twice)."""
        if self.pending is not None and self.conn is not None:
            # A fresh future: the old one was settled by the close that made this resend needed.
            self._ack = asyncio.get_running_loop().create_future()
            if not self.conn.send(self.pending[0]):
                self._ack.set_result(None)

    async def wait_ack(self) -> None:
        if self._ack is not None:
            await self._ack

    def end_combo(self, combo: str) -> None:
        if self.conn is not None:
            self.conn.send(self.shared.codec.encode_client(ComboEnd(room=self.spec.room,
                                                                    combo=combo)))

    # -- receive path --

    def _on_frame(self, data: bytes) -> None:
        now = time.monotonic()
        value = msgpack.unpackb(data, raw=False, max_str_len=MAX_SERVER_FRAME_BYTES,
                                max_bin_len=0, max_ext_len=0)
        items = value if type(value) is list else (value,)
        self.shared.counters["frames"] += 1
        for item in items:
            kind = item.get("type")
            if kind in EVENT_TYPES:
                self._on_event(item, kind, now)
            elif kind in IGNORED_TYPES:
                if kind in STATE_TYPES:
                    self.shared.counters["state"] += 1
                continue
            else:
                self._on_control(item, kind, now)

    def _on_event(self, item: dict[str, Any], kind: str, now: float) -> None:
        seq = item["seq"]
        if item.get("epoch") != self.epoch and self._joined:
            self._on_gap(item.get("epoch") or "", seq - 1)  # `gap` comes first; a backstop
        room = self.shared.rooms.get(item["room"])
        if room is None:
            return
        known = room.events.get(seq)
        if known is None:
            msg = SERVER_MESSAGES[kind].from_dict(item, strict=False)
            m: Any = msg
            room.events[seq] = (m.eid, kind, m.sender, m.combo, m.count)
        elif known[0] != item["eid"]:
            room.conflicts += 1
        self.recv_seq.append(seq)
        self.recv_t.append(now)
        if seq > self.last_seq:
            self.last_seq = seq
        self.shared.counters["received"] += 1

    def _on_control(self, item: dict[str, Any], kind: Any, now: float) -> None:
        cls = SERVER_MESSAGES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            return
        msg: Any = cls.from_dict(item, strict=False)
        if kind == "ack" or (kind == "error" and msg.tx is not None):
            self._on_answer(msg, kind, now)
        elif kind == "gap":
            self._on_gap(msg.epoch, msg.seq)
        elif kind in ("welcome", "joined") or (kind == "error" and self._reply is not None):
            if self._reply is not None and not self._reply.done():
                self._reply.set_result(msg)
        elif kind == "error":
            self.shared.counters["other_errors"] += 1

    def _on_gap(self, epoch: str, seq: int) -> None:
        """The room's history restarted: events may be lost; this member leaves the tally."""
        self.gap = True
        self.epoch, self.last_seq = epoch, seq

    def _on_answer(self, msg: Any, kind: str, now: float) -> None:
        if self.pending is None or msg.tx != f"{self.spec.user}.{self.pending[1]}":
            return  # an answer to a transaction no longer in flight (resent twice)
        if kind == "error" and msg.code == RETRY_SAME_TX:
            # Perhaps charged, not yet shown: the outcome is known only by sending the same tx
            # again (docs/protocol.md), so the gift stays in flight.
            self.retry_ms = msg.retry_ms or 500
            self.shared.counters["retried"] = self.shared.counters.get("retried", 0) + 1
            if self._ack is not None and not self._ack.done():
                self._ack.set_result(None)
            return
        row = self.pending[1]
        self.pending = None
        self.send_ack[row] = now
        if kind == "ack":
            self.send_code[row] = DUPLICATE if msg.duplicate else ACCEPTED
            self.shared.counters["accepted"] += 1
        else:
            self.send_code[row] = self.shared.error_index(msg.code)
            self.shared.counters["rejected"] += 1
        if self._ack is not None and not self._ack.done():
            self._ack.set_result(None)

    def _on_close(self, code: int | None) -> None:
        self.closes.append(code)
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(SessionError(f"closed during the handshake ({code})"))
            self._reply.exception()
        if self._ack is not None and not self._ack.done():
            self._ack.set_result(None)  # the sender decides: reconnect and resend, or give up
        self.shared.counters["closed"] += 1
        self.shared.on_change()
