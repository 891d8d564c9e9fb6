"""Server -> client messages about a room: the join snapshot, events, and state updates.

Room events (`gift`, `combo`) carry a per-room position (`epoch`, `seq`) and a unique `eid`, are
kept in the room's history and replayed on resume. The epoch changes when the room's history was
created afresh (Redis lost its last writes, a failover); `gap` tells a joined client so. State
updates (`viewers`, `leaderboard`, `goal`, `room`) are not sequenced: the latest one wins, and
`joined` carries a fresh snapshot of all of them.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

from protocol.fields import FieldReader
from protocol.limits import (
    MAX_COMBO_ID_LEN,
    MAX_EPOCH_LEN,
    MAX_GIFT_ID_LEN,
    MAX_REQUEST_ID_LEN,
    MAX_ROOM_ID_LEN,
    MAX_SAFE_INT,
)
from protocol.message import Message, ServerMessage, server_message


class Resume(StrEnum):
    """Outcome of a `join` (`joined.resume`)."""

    NONE = "none"
    """No `after` was given: a fresh snapshot."""
    OK = "ok"
    """Every event after `after` follows (or none was missed)."""
    GAP = "gap"
    """`after` is older than the room history, or of another epoch: missed events are lost; this
    is a fresh snapshot."""


_RESUMES = frozenset(Resume)
_NON_NEGATIVE = (0, MAX_SAFE_INT)


def _room(r: FieldReader) -> str:
    return r.ident("room", MAX_ROOM_ID_LEN)


def _epoch(r: FieldReader) -> str:
    return r.ident("epoch", MAX_EPOCH_LEN)


# -- nested values --


@dataclass(frozen=True, slots=True, kw_only=True)
class TopEntry:
    """One row of a leaderboard: a gifter and the coins they spent in this stream."""

    user: str
    name: str
    coins: int

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "name": self.name, "coins": self.coins}

    @classmethod
    def parse(cls, r: FieldReader) -> Self:
        r.reject_unknown(frozenset(("user", "name", "coins")))
        return cls(
            user=r.text("user"), name=r.text("name"), coins=r.integer("coins", *_NON_NEGATIVE)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Goal:
    """A stream's gift goal: `progress` coins towards `target`."""

    title: str
    target: int
    progress: int

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "target": self.target, "progress": self.progress}

    @classmethod
    def parse(cls, r: FieldReader) -> Self:
        r.reject_unknown(frozenset(("title", "target", "progress")))
        return cls(
            title=r.text("title"),
            target=r.integer("target", 1, MAX_SAFE_INT),
            progress=r.integer("progress", *_NON_NEGATIVE),
        )


def _top(r: FieldReader) -> tuple[TopEntry, ...]:
    return tuple(TopEntry.parse(item) for item in r.nested_list("top"))


# -- join snapshot --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(ServerMessage):
    """Reply to `join`: a snapshot of the room as of its event (`epoch`, `seq`)."""

    TYPE: ClassVar[str] = "joined"
    id: str | None = None
    room: str
    creator: str
    live: bool
    viewers: int
    top: tuple[TopEntry, ...] = ()
    goal: Goal | None = None
    seq: int
    epoch: str
    resume: str

    def to_dict(self) -> dict[str, Any]:
        out = Message.to_dict(self)
        out["top"] = [entry.to_dict() for entry in self.top]
        if self.goal is not None:
            out["goal"] = self.goal.to_dict()
        return out

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        goal = r.opt_nested("goal")
        return cls(
            id=r.opt_ident("id", MAX_REQUEST_ID_LEN),
            room=_room(r),
            creator=r.text("creator"),
            live=r.boolean("live"),
            viewers=r.integer("viewers", *_NON_NEGATIVE),
            top=_top(r),
            goal=None if goal is None else Goal.parse(goal),
            seq=r.integer("seq", *_NON_NEGATIVE),
            epoch=_epoch(r),
            resume=r.choice("resume", _RESUMES),
        )


# -- room events (carry seq and eid) --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class GiftEvent(ServerMessage):
    """A settled gift: a plain send, or a whole combo (`combo` set, `count` its total)."""

    TYPE: ClassVar[str] = "gift"
    room: str
    seq: int
    epoch: str
    eid: str
    sender: str
    name: str
    gift: str
    count: int
    coins: int
    combo: str | None = None
    ts: int

    def to_dict(self) -> dict[str, Any]:
        # Written out: this is the fan-out hot path, and the generic loop costs twice as much.
        out = {
            "type": "gift",
            "room": self.room,
            "seq": self.seq,
            "epoch": self.epoch,
            "eid": self.eid,
            "sender": self.sender,
            "name": self.name,
            "gift": self.gift,
            "count": self.count,
            "coins": self.coins,
        }
        if self.combo is not None:
            out["combo"] = self.combo
        out["ts"] = self.ts
        return out

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            room=_room(r),
            seq=r.integer("seq", 1, MAX_SAFE_INT),
            epoch=_epoch(r),
            eid=r.ident("eid"),
            sender=r.text("sender"),
            name=r.text("name"),
            gift=r.ident("gift", MAX_GIFT_ID_LEN),
            count=r.integer("count", 1, MAX_SAFE_INT),
            coins=r.integer("coins", *_NON_NEGATIVE),
            combo=r.opt_ident("combo", MAX_COMBO_ID_LEN),
            ts=r.integer("ts", *_NON_NEGATIVE),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class ComboProgress(ServerMessage):
    """A running combo's count so far; its settled total arrives later as a `gift` event."""

    TYPE: ClassVar[str] = "combo"
    room: str
    seq: int
    epoch: str
    eid: str
    combo: str
    sender: str
    name: str
    gift: str
    count: int
    ts: int

    def to_dict(self) -> dict[str, Any]:
        # Written out for the same reason as GiftEvent.to_dict: fan-out hot path.
        return {
            "type": "combo",
            "room": self.room,
            "seq": self.seq,
            "epoch": self.epoch,
            "eid": self.eid,
            "combo": self.combo,
            "sender": self.sender,
            "name": self.name,
            "gift": self.gift,
            "count": self.count,
            "ts": self.ts,
        }

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            room=_room(r),
            seq=r.integer("seq", 1, MAX_SAFE_INT),
            epoch=_epoch(r),
            eid=r.ident("eid"),
            combo=r.ident("combo", MAX_COMBO_ID_LEN),
            sender=r.text("sender"),
            name=r.text("name"),
            gift=r.ident("gift", MAX_GIFT_ID_LEN),
            count=r.integer("count", 1, MAX_SAFE_INT),
            ts=r.integer("ts", *_NON_NEGATIVE),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Gap(ServerMessage):
    """The room's history restarted (a new epoch): events since the client's position may have
    been lost and cannot be replayed. The connection stays joined; its position is now
    (`epoch`, `seq`), later events follow, and fresh room state follows."""

    TYPE: ClassVar[str] = "gap"
    room: str
    epoch: str
    seq: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(room=_room(r), epoch=_epoch(r), seq=r.integer("seq", *_NON_NEGATIVE))


# -- room state (latest wins) --


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class ViewerCount(ServerMessage):
    """How many viewers are in the room now."""

    TYPE: ClassVar[str] = "viewers"
    room: str
    count: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(room=_room(r), count=r.integer("count", *_NON_NEGATIVE))


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Leaderboard(ServerMessage):
    """The stream's top gifters, highest first."""

    TYPE: ClassVar[str] = "leaderboard"
    room: str
    top: tuple[TopEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "leaderboard",
            "room": self.room,
            "top": [entry.to_dict() for entry in self.top],
        }

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(room=_room(r), top=_top(r))


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class GoalUpdate(ServerMessage):
    """The room's gift goal changed (set, or progress made)."""

    TYPE: ClassVar[str] = "goal"
    room: str
    title: str
    target: int
    progress: int

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            room=_room(r),
            title=r.text("title"),
            target=r.integer("target", 1, MAX_SAFE_INT),
            progress=r.integer("progress", *_NON_NEGATIVE),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class RoomStatus(ServerMessage):
    """The room went live or ended."""

    TYPE: ClassVar[str] = "room"
    room: str
    live: bool

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(room=_room(r), live=r.boolean("live"))
