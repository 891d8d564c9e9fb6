"""What a room's members are shown of a battle (server/hub/battlestate.py BattleView): score
updates coalesced like leaderboards (one push per interval, the latest scores), never moving a
side's bar back, start and end pushed at once, nothing after the end."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from protocol import BattleSide, BattleUpdate
from server.hub.battlestate import BattleView


def _start() -> BattleUpdate:
    return BattleUpdate(room="red", battle="b1", phase="start", starts_at=1, ends_at=2,
                        sides=(BattleSide(room="red", creator="c-red", score=0),
                               BattleSide(room="blue", creator="c-blue", score=0)))


def _scores(msg: BattleUpdate) -> dict[str, int]:
    return {s.room: s.score for s in msg.sides}


class Pushes:
    """The view's broadcast: each push recorded, and awaitable."""

    def __init__(self) -> None:
        self.sent: list[BattleUpdate] = []
        self._arrived = asyncio.Event()

    def __call__(self, msg: BattleUpdate) -> None:
        self.sent.append(msg)
        self._arrived.set()

    async def nth(self, n: int) -> BattleUpdate:
        """The n-th push (1-based), once it was made."""
        while len(self.sent) < n:
            self._arrived.clear()
            await self._arrived.wait()
        return self.sent[n - 1]


async def test_a_burst_of_scores_is_one_push_with_the_latest_and_a_bar_never_moves_back() -> None:
    pushes = Pushes()
    view = BattleView(pushes, interval_s=0.01)
    view.take(_start())
    assert [m.phase for m in pushes.sent] == ["start"]  # at once
    # 100 score envelopes of both sides between two loop turns, as a busy channel delivers them
    # (own-room events carry `bt`, the opponent's copies `s`), some arriving out of order.
    for i in range(1, 51):
        view.on_envelope("red", {"k": "ev", "bt": {"b": "b1", "r": "red", "v": 5 * i}})
        view.on_envelope("red", {"k": "bt", "s": {"b": "b1", "r": "blue", "v": 3 * (51 - i)}})
    pushed = await pushes.nth(2)
    assert len(pushes.sent) == 2 and pushed.phase == "score"
    assert _scores(pushed) == {"red": 250, "blue": 150}
    # A lower score (a crossed publish) changes nothing and pushes nothing; a higher one does.
    view.on_envelope("red", {"k": "bt", "s": {"b": "b1", "r": "blue", "v": 100}})
    view.on_envelope("red", {"k": "bt", "s": {"b": "b1", "r": "blue", "v": 160}})
    assert _scores(await pushes.nth(3)) == {"red": 250, "blue": 160}
    assert len(pushes.sent) == 3


async def test_the_end_is_pushed_at_once_and_nothing_scores_after_it() -> None:
    pushes = Pushes()
    view = BattleView(pushes, interval_s=0.01)
    view.take(_start())
    view.on_envelope("red", {"k": "ev", "bt": {"b": "b1", "r": "red", "v": 30}})  # pending
    end = BattleUpdate(room="red", battle="b1", phase="end", starts_at=1, ends_at=2,
                       sides=(BattleSide(room="red", creator="c-red", score=35),
                              BattleSide(room="blue", creator="c-blue", score=5)),
                       result="win", winner="red")
    view.take(end)
    assert [m.phase for m in pushes.sent] == ["start", "end"]  # the pending score is dropped
    view.on_envelope("red", {"k": "ev", "bt": {"b": "b1", "r": "red", "v": 99}})
    view.on_envelope("red", {"k": "bt", "s": {"b": "b2", "r": "blue", "v": 7}})  # another battle
    assert view.current == end  # what the next joiner's snapshot is merged into, too
    assert view.adopt(replace(end, phase="score", result=None, winner=None)) == end
