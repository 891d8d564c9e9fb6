"""What the hub keeps per room and per member, the encoded message all recipients share, and
how a member is sent events (live, or the replay of a join)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import (
    CloseCode,
    ComboProgress,
    Gap,
    GiftEvent,
    Goal,
    JsonCodec,
    MsgpackCodec,
    ServerMessage,
    TopEntry,
)


class Codecs:
    """One codec per subprotocol for the whole process (the event loop is one thread). Shared by
    every connection too: a msgpack Packer reserves a large buffer, ~256 KiB per instance, which
    per connection would dwarf everything else a connection costs."""

    def __init__(self) -> None:
        self.msgpack = MsgpackCodec()
        self.json = JsonCodec()

    def for_subprotocol(self, subprotocol: str) -> MsgpackCodec | JsonCodec:
        if subprotocol == self.msgpack.subprotocol:
            return self.msgpack
        if subprotocol == self.json.subprotocol:
            return self.json
        raise KeyError(subprotocol)


RoomEvent = GiftEvent | ComboProgress
# The close reason of a member cut for not reading fast enough (its writer overflowed, or a join's
# replay outgrew what it may hold): it reconnects and resumes from its last seq.
TOO_SLOW_REASON = "too slow: reconnect and resume"


class Outbox(Protocol):
    """A member's bounded queue of encoded messages (server/edge/writer.py): the hub hands over
    bytes and never awaits a client (but for its own join's replay: `replay`)."""

    max_bytes: int
    closed: bool

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet read by the client (as far as the writer knows)."""
        ...

    async def writable(self) -> None:
        """Until what is queued has been handed over and the client has read most of it."""
        ...

    def push(self, data: Any, size: int) -> bool:
        """Queue a data message, sent within the flush window; False if refused (closed, or
        over its bound: the writer then closes the member)."""
        ...

    def push_control(self, data: Any, size: int) -> bool:
        """Queue a message sent at once, ahead of queued data; False if refused."""
        ...


class Member(Protocol):
    """What the hub needs of a connection."""

    conn_id: str
    binary: bool
    counted: bool  # counts as a viewer (overlays do not)
    writer: Outbox

    def kill(self, code: int, reason: str) -> None:
        """Close the connection soon (never re-enters the hub synchronously)."""


class Outgoing:
    """One server message, encoded lazily at most once per codec, shared by all recipients."""

    __slots__ = ("_bin", "_codecs", "_txt", "msg", "seq")

    def __init__(self, codecs: Codecs, msg: ServerMessage, seq: int = 0) -> None:
        self._codecs = codecs
        self.msg = msg
        self.seq = seq
        self._bin: tuple[bytes, int] | None = None
        self._txt: tuple[str, int] | None = None

    def encoded(self, binary: bool) -> tuple[Any, int]:
        if binary:
            if self._bin is None:
                data = self._codecs.msgpack.encode(self.msg)
                self._bin = (data, len(data))
            return self._bin
        if self._txt is None:
            text = self._codecs.json.encode(self.msg)
            self._txt = (text, len(text.encode()))
        return self._txt


@dataclass(eq=False, slots=True)
class MemberState:
    last_seq: int = 0
    epoch: str = ""  # the epoch of last_seq
    # Live events held while the join snapshot is read; None once the member is live.
    buffer: list[Outgoing] | None = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Room:
    name: str
    channel: str
    members: dict[Member, MemberState] = field(default_factory=dict)
    joining: int = 0
    subscribed: asyncio.Future[None] | None = None
    epoch: str | None = None  # the room's epoch as last seen here (last_seq, floor are in it)
    last_seq: int | None = None  # last seq delivered here; None before the first event
    live_seq: int = 0  # last seq received live (pub/sub): live events come in seq order
    floor: int | None = None  # lowest snapshot seq handed out (recovery start before any event)
    recovering: list[RoomEvent] | None = None
    resync_after_join: bool = False
    top: tuple[TopEntry, ...] | None = None
    top_pending: Any = None  # the latest envelope's `top`, not yet decoded (envelopes.py)
    goal: Goal | None = None
    viewers: int = -1
    # State rounds (server/hub/envelopes.py): what the last round sent, when, events since.
    state_timer: asyncio.TimerHandle | None = None
    state_dirty: bool = False
    state_at: float = float("-inf")
    state_events: int = 0
    sent_top: tuple[TopEntry, ...] | None = None
    sent_goal: Goal | None = None
    sent_viewers: int = -1
    open_combos: set[str] = field(default_factory=set)
    battle: Any = None  # its BattleView (server/hub/battlestate.py), set by the hub

    def cancel_timers(self) -> None:
        if self.state_timer is not None:
            self.state_timer.cancel()
        if self.battle is not None:
            self.battle.cancel()


def push_event(codecs: Codecs, room: str, member: Member, st: MemberState, out: Outgoing) -> bool:
    """One room event to one live member; a member whose position is in another epoch (it
    joined across an epoch change) is told `gap` first. False if not sent."""
    msg = out.msg
    assert isinstance(msg, GiftEvent | ComboProgress)
    if msg.epoch != st.epoch:
        gap = Gap(room=room, epoch=msg.epoch, seq=msg.seq - 1)
        data, size = Outgoing(codecs, gap).encoded(member.binary)
        member.writer.push(data, size)
        st.epoch = msg.epoch
    elif msg.seq <= st.last_seq:
        return False
    st.last_seq = msg.seq
    data, size = out.encoded(member.binary)
    return member.writer.push(data, size)


async def replay(codecs: Codecs, room: Room, member: Member, st: MemberState,
                 events: Iterable[RoomEvent], after: int, max_held: int) -> int | None:
    """A join's replay: the events after `after`, in order, pushed no faster than the member
    reads them. The last seq pushed, or None if the member left or was cut meanwhile.

    A client cut off as too slow (4008) resumes from its last seq, and what it missed can be more
    than its writer's bound holds: pushed at once, the replay itself overflowed and the client was
    cut again on every reconnect, never catching up. So at most half the bound is queued at a
    time, and the next part waits for the client to read (`Outbox.writable`). Live events wait
    in the member's join buffer meanwhile, up to `max_held` (the history's length): past it the
    member is cut 4008 and resumes from where its replay got to."""
    writer = member.writer
    budget = writer.max_bytes // 2
    last = after
    for msg in events:
        if msg.seq <= last:
            continue
        data, size = Outgoing(codecs, msg).encoded(member.binary)
        if writer.buffered + size > budget:
            await writer.writable()
            if writer.closed or room.members.get(member) is not st:
                return None
            if st.buffer is not None and len(st.buffer) > max_held:
                member.kill(CloseCode.TOO_SLOW, TOO_SLOW_REASON)
                return None
        writer.push(data, size)
        last = msg.seq
    return last


def move_members(codecs: Codecs, room: Room, seq: int) -> None:
    """Live members whose position is in another epoch than the room's: told `gap`, moved to
    (the room's epoch, seq)."""
    epoch = room.epoch
    assert epoch is not None
    out = Outgoing(codecs, Gap(room=room.name, epoch=epoch, seq=seq))
    for member, st in room.members.items():
        if st.buffer is None and st.epoch != epoch:
            st.epoch, st.last_seq = epoch, seq
            data, size = out.encoded(member.binary)
            member.writer.push(data, size)


class HubError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class HubSettings:
    # State rounds (leaderboard, goal, viewers) per room: at most this often, and in a busy room
    # once per envelopes.EVENTS_PER_ROUND events, but never later than the max after a change.
    state_interval_s: float = 0.2
    state_max_interval_s: float = 1.0
    tick_s: float = 0.25  # combo sweep period
    viewers_interval_s: float = 1.0
    presence_refresh_s: float = 10.0
    max_replay: int = 1000
    subscribe_timeout_s: float = 10.0  # a join waits this long for pub/sub (Redis down)


