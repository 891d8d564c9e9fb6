"""Where a live event fits a room's position, and what a recovery delivers (server/hub/recovery.py,
pure: the hub tests run the same paths against Redis)."""

from __future__ import annotations

import msgpack

from protocol import GiftEvent
from server.hub.recovery import Place, merge, place
from server.hub.rooms import Room
from server.hub.roomstate import Since


def _ev(epoch: str, seq: int) -> GiftEvent:
    return GiftEvent(room="r", seq=seq, epoch=epoch, eid=f"r-{epoch}-{seq}", sender="s", name="S",
                     gift="rose", count=1, coins=1, ts=seq)


def _room(epoch: str, last: int, live: int) -> Room:
    room = Room("r", "ch")
    room.epoch, room.last_seq, room.live_seq = epoch, last, live
    return room


def test_a_live_event_is_delivered_dropped_or_fetched_by_its_position() -> None:
    assert place(_room("a", 5, 5), _ev("a", 6)) is Place.DELIVER
    assert place(_room("a", 5, 5), _ev("a", 8)) is Place.FETCH_HOLD  # pub/sub lost 6 and 7
    assert place(_room("a", 5, 5), _ev("b", 1)) is Place.FETCH_HOLD  # another epoch
    # Recovered from the history before it arrived live: a duplicate, once.
    room = _room("a", 9, 5)
    assert place(room, _ev("a", 6)) is Place.DUPLICATE
    assert room.live_seq == 6
    # Below a seq already received live: the room's seq went back.
    assert place(_room("a", 9, 9), _ev("a", 7)) is Place.FETCH
    fresh = Room("r", "ch")
    assert place(fresh, _ev("a", 3)) is Place.DELIVER and fresh.epoch == "a"


def _since(epoch: str, start: int, seq: int, events: list[GiftEvent], complete: bool = True
           ) -> Since:
    raw = [msgpack.packb(e.to_dict()) for e in events]
    return Since(epoch, start, seq, complete, raw)


def test_a_recovery_in_a_new_epoch_delivers_its_events_from_its_start_and_drops_the_old() -> None:
    since = _since("b", 60, 62, [_ev("b", 61), _ev("b", 62)])
    got = merge(since, [_ev("a", 106), _ev("b", 63)], "a", 105)
    assert [(e.epoch, e.seq) for e in got.events] == [("b", 61), ("b", 62), ("b", 63)]
    assert not got.lost and not got.ask_again


def test_a_recovery_in_the_same_epoch_merges_held_events_without_repeats() -> None:
    got = merge(_since("a", 0, 7, [_ev("a", 6), _ev("a", 7)]), [_ev("a", 7), _ev("a", 8)], "a", 5)
    assert [e.seq for e in got.events] == [6, 7, 8]
    assert not got.lost


def test_a_history_that_no_longer_reaches_back_is_lost_and_a_newer_epoch_asks_again() -> None:
    got = merge(_since("a", 0, 9, [_ev("a", 8), _ev("a", 9)], complete=False), [], "a", 5)
    assert got.lost and [e.seq for e in got.events] == [8, 9]
    got = merge(_since("b", 0, 1, [_ev("b", 1)]), [_ev("c", 1)], "a", 5)
    assert got.ask_again and [(e.epoch, e.seq) for e in got.events] == [("b", 1)]
