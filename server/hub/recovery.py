"""A room's position: where a live event fits (`place`), and what a room recovering from the
history delivers (`merge`: the fetched events and the live events held meanwhile, in seq order, of
the room's current epoch only). Pure: hub.py does the I/O."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import Enum

import msgpack

from server.hub.envelopes import event_message
from server.hub.rooms import Room, RoomEvent
from server.hub.roomstate import Since, decode_event


class Place(Enum):
    DELIVER = 1  # the next event
    DUPLICATE = 2  # delivered already (recovered from the history before it arrived live)
    FETCH_HOLD = 3  # a seq skipped ahead or another epoch: fetch from Redis, hold this one
    FETCH = 4  # the seq went back: fetch (Redis starts a new epoch), drop this one


def place(room: Room, msg: RoomEvent) -> Place:
    """Where a live (pub/sub) event fits the room's position; notes it as received live."""
    if room.epoch is None:
        room.epoch = msg.epoch  # no snapshot read yet: the joins compare theirs with it
    elif msg.epoch != room.epoch:
        return Place.FETCH_HOLD  # the room's state was created afresh: Redis says how
    last = room.last_seq
    if last is not None and msg.seq <= last:
        if msg.seq <= room.live_seq:
            # Live events arrive in seq order, so this seq went back: Redis lost writes (a
            # restore by hand; a restart or failover changes the epoch instead).
            return Place.FETCH
        room.live_seq = msg.seq
        return Place.DUPLICATE
    room.live_seq = msg.seq
    if last is not None and msg.seq > last + 1:
        return Place.FETCH_HOLD  # pub/sub lost something: fetch the gap first
    return Place.DELIVER


@dataclass(frozen=True, slots=True)
class Recovered:
    events: list[RoomEvent]  # to deliver, in seq order, all after the position recovered from
    lost: bool  # the history no longer reaches back: some events cannot be delivered
    ask_again: bool  # a held event of an epoch newer than Redis's answer


def merge(since: Since, held: list[RoomEvent], asked: str, after: int) -> Recovered:
    """`since` answers (asked, after); when its epoch differs, the position is (epoch, start).
    Held events of the old epoch are dropped: their seqs name other events, or lost ones."""
    if since.epoch != asked:
        after = since.start
    events: dict[int, RoomEvent] = {}
    for item in since.events:
        with contextlib.suppress(ValueError, msgpack.UnpackException):
            msg = event_message(decode_event(item))
            if msg is not None and msg.epoch == since.epoch:
                events[msg.seq] = msg
    for msg in held:
        if msg.epoch == since.epoch:
            events.setdefault(msg.seq, msg)
    ordered = [events[s] for s in sorted(events) if s > after]
    lost = not since.complete and (not ordered or ordered[0].seq > after + 1)
    ask_again = any(m.epoch not in (asked, since.epoch) for m in held)
    return Recovered(ordered, lost, ask_again)
