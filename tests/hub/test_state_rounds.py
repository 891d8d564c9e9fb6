"""Room state rounds (server/hub/envelopes.py): they ride with events, carry only what changed,
and in a busy room come once per EVENTS_PER_ROUND events at most, yet always arrive."""

from __future__ import annotations

import asyncio
from typing import Any

from protocol import GoalUpdate, Leaderboard, RoomStatus, ServerMessage, ViewerCount
from server.hub.envelopes import EVENTS_PER_ROUND, StatePushes
from server.hub.rooms import HubSettings, Room


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _top(coins: int) -> dict[str, Any]:
    return {"k": "ev", "top": [{"user": "u1", "name": "Ann", "coins": coins}]}


def _pushes() -> tuple[StatePushes, Room, Clock, list[ServerMessage]]:
    sent: list[ServerMessage] = []
    clock = Clock()
    pushes = StatePushes(HubSettings(), lambda room, msg: sent.append(msg), clock)
    return pushes, Room("r1", "ch"), clock, sent


async def test_a_quiet_rooms_state_rides_with_the_gift_that_changed_it() -> None:
    pushes, room, _clock, sent = _pushes()
    pushes.on_envelope(room, _top(5))
    assert sent == []  # not on its own...
    pushes.after_event(room)  # ...but right after the event, into the same flush
    assert sent == [Leaderboard(room="r1", top=room.top or ())]
    assert room.top is not None and room.top[0].coins == 5 and room.top_pending is None
    assert room.state_timer is None  # nothing left for the timer


async def test_a_busy_room_gets_one_round_per_events_per_round_events() -> None:
    pushes, room, clock, sent = _pushes()
    pushes.on_envelope(room, _top(1))
    pushes.after_event(room)
    for coins in range(2, 2 + 10 * EVENTS_PER_ROUND):  # 50 gifts/s, each changes the top
        clock.now += 0.02
        pushes.on_envelope(room, _top(coins))
        pushes.after_event(room)
    rounds = len(sent)
    assert rounds == 1 + 10  # one per EVENTS_PER_ROUND events, never one per gift
    assert all(isinstance(m, Leaderboard) for m in sent)
    last = sent[-1]
    assert isinstance(last, Leaderboard) and last.top[0].coins == 1 + 10 * EVENTS_PER_ROUND
    if room.state_timer is not None:
        room.state_timer.cancel()


async def test_a_round_carries_only_what_changed() -> None:
    pushes, room, clock, sent = _pushes()
    goal = {"title": "mic", "target": 100, "progress": 5}
    pushes.on_envelope(room, {**_top(5), "goal": goal})
    pushes.on_viewers(room, 12)
    pushes.after_event(room)
    assert [type(m) for m in sent] == [Leaderboard, GoalUpdate, ViewerCount]
    sent.clear()
    clock.now += 2.0
    pushes.on_envelope(room, {**_top(9), "goal": goal})  # the goal and viewers did not change
    pushes.on_viewers(room, 12)
    pushes.after_event(room)
    assert [type(m) for m in sent] == [Leaderboard]
    sent.clear()
    pushes.push(room, everything=True)  # after a history restart: all of it again
    assert [type(m) for m in sent] == [Leaderboard, GoalUpdate]


async def test_a_change_no_event_carries_is_pushed_by_the_timer() -> None:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[ServerMessage] = loop.create_future()
    pushes = StatePushes(HubSettings(state_interval_s=0.01, state_max_interval_s=0.02),
                         lambda room, msg: arrived.done() or arrived.set_result(msg))
    room = Room("r1", "ch")
    pushes.on_viewers(room, 3)  # a viewer count: no gift will carry it
    assert not arrived.done() and room.state_timer is not None
    assert await arrived == ViewerCount(room="r1", count=3)
    assert not room.state_dirty and room.state_timer is None


async def test_a_status_change_is_not_held_for_a_round() -> None:
    pushes, room, _clock, sent = _pushes()
    pushes.on_envelope(room, {"k": "st", "live": False})
    assert sent == [RoomStatus(room="r1", live=False)]
    assert room.state_timer is None


async def test_an_invalid_state_changes_nothing() -> None:
    pushes, room, _clock, sent = _pushes()
    pushes.on_envelope(room, _top(5))
    pushes.push(room)
    before = room.top
    assert before is not None and sent == [Leaderboard(room="r1", top=before)]
    pushes.on_envelope(room, {"k": "ev", "top": "not a list"})
    pushes.on_envelope(room, {"k": "ev", "top": [{"user": "u1"}]})  # no name, no coins
    pushes.push(room, everything=True)
    assert room.top == before  # the last good leaderboard stands
    assert sent == [Leaderboard(room="r1", top=before)] * 2
