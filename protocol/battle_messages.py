"""Server -> client messages about a gift battle between two rooms.

A battle is two live rooms and a time window; every gift debited inside the window scores its
coins for its room's side. Members of both rooms get the same `battle` messages (each addressed
to their own `room`): `start`, then `score` updates (latest wins, coalesced like leaderboards),
then `end` with the result. Not sequenced and not in the room history: a joining member gets the
battle's current state right after `joined`.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

from protocol.fields import FieldReader
from protocol.limits import MAX_BATTLE_ID_LEN, MAX_ROOM_ID_LEN, MAX_SAFE_INT
from protocol.message import Message, ServerMessage, server_message
from protocol.room_messages import TopEntry

_NON_NEGATIVE = (0, MAX_SAFE_INT)


class BattlePhase(StrEnum):
    """`battle.phase`."""

    START = "start"
    """The window opened: scores start at 0."""
    SCORE = "score"
    """A side's score changed (sent at most every state interval per room)."""
    END = "end"
    """The window closed and both sides are final: `result` says how it ended."""


class BattleResult(StrEnum):
    """`battle.result`, with phase `end` only."""

    WIN = "win"
    """`winner` names the room with the higher score."""
    DRAW = "draw"
    """Both scores are equal; `winner` is absent."""
    CANCELLED = "cancelled"
    """A creator cancelled the running battle; the scores are as of the cancel."""


_PHASES = frozenset(BattlePhase)
_RESULTS = frozenset(BattleResult)


@dataclass(frozen=True, slots=True, kw_only=True)
class BattleSide:
    """One room's side: its score (coins of gifts debited in the window) and its top gifter."""

    room: str
    creator: str
    score: int
    top: TopEntry | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"room": self.room, "creator": self.creator, "score": self.score}
        if self.top is not None:
            out["top"] = self.top.to_dict()
        return out

    @classmethod
    def parse(cls, r: FieldReader) -> Self:
        r.reject_unknown(frozenset(("room", "creator", "score", "top")))
        top = r.opt_nested("top")
        return cls(
            room=r.ident("room", MAX_ROOM_ID_LEN),
            creator=r.text("creator"),
            score=r.integer("score", *_NON_NEGATIVE),
            top=None if top is None else TopEntry.parse(top),
        )


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class BattleUpdate(ServerMessage):
    """The state of the battle `room` is in: both sides, highest first is not implied (the
    order is inviter, invitee)."""

    TYPE: ClassVar[str] = "battle"
    room: str
    battle: str
    phase: str
    starts_at: int
    ends_at: int
    sides: tuple[BattleSide, ...]
    result: str | None = None
    winner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = Message.to_dict(self)
        out["sides"] = [side.to_dict() for side in self.sides]
        return out

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        sides = tuple(BattleSide.parse(item) for item in r.nested_list("sides"))
        result = None if r.opt_text("result") is None else r.choice("result", _RESULTS)
        return cls(
            room=r.ident("room", MAX_ROOM_ID_LEN),
            battle=r.ident("battle", MAX_BATTLE_ID_LEN),
            phase=r.choice("phase", _PHASES),
            starts_at=r.integer("starts_at", *_NON_NEGATIVE),
            ends_at=r.integer("ends_at", *_NON_NEGATIVE),
            sides=sides,
            result=result,
            winner=r.opt_ident("winner", MAX_ROOM_ID_LEN),
        )

    def side(self, room: str) -> BattleSide | None:
        return next((s for s in self.sides if s.room == room), None)
