"""The verifier itself: it must see loss, duplicates, reordering and unacknowledged spends, or the
smoke run's zeros prove nothing."""

from __future__ import annotations

from array import array

from loadtest.client import ACCEPTED, RoomLog
from loadtest.results import MemberResult, WorkerResult
from loadtest.verify import verify

ROOM = "r"


def member(user: str, seqs: list[int], *, joined: int = 0, sender_rows: int = 0,
           connected: bool = True, slow: bool = False,
           kinds: list[int] | None = None) -> MemberResult:
    times = array("d", [10.0 + 0.001 * i for i in range(len(seqs))])
    sent = array("d", [1.0 + i for i in range(sender_rows)])
    return MemberResult(
        user=user, room=ROOM, overlay=False, sender=sender_rows > 0, slow=slow,
        joined_seq=joined, connected=connected, gap=False, closes=[],
        recv_seq=array("q", seqs).tobytes(), recv_t=times.tobytes(),
        send_t=sent.tobytes(), send_ack=array("d", [s + 0.002 for s in sent]).tobytes(),
        send_code=array("b", [ACCEPTED] * sender_rows).tobytes(),
        send_kind=array("b", kinds or [0] * sender_rows).tobytes(),
    )


def events(n: int, sender: str = "s") -> RoomLog:
    log = RoomLog()
    for seq in range(1, n + 1):
        log.events[seq] = (f"e{seq}", "gift", sender, None, 1)
    return log


def result(members: list[MemberResult], log: RoomLog) -> list[WorkerResult]:
    return [WorkerResult(0, members, {ROOM: log}, {})]


def test_a_clean_run_has_nothing_to_report() -> None:
    v = verify(result([member("s", [1, 2, 3], sender_rows=3), member("a", [1, 2, 3])],
                      events(3)), {ROOM: 3}, {0: 1}, 0.0)
    assert (v.lost, v.duplicated, v.out_of_order, v.expected, v.received) == (0, 0, 0, 6, 6)
    assert v.gifts_accepted == 3 and v.coins_accepted == 3
    assert len(v.delivery_s) == 6 and all(d > 0 for d in v.delivery_s)


def test_loss_duplicates_and_reordering_are_counted() -> None:
    members = [
        member("s", [1, 2, 3, 4], sender_rows=4),
        member("lost", [1, 3]),  # 2 and 4 never came
        member("dup", [1, 2, 2, 3, 4]),
        member("reordered", [1, 3, 2, 4]),
    ]
    v = verify(result(members, events(4)), {ROOM: 4}, {0: 1}, 0.0)
    assert v.lost == 2
    assert v.duplicated == 1
    assert v.out_of_order == 1


def test_the_rooms_last_seq_counts_even_when_nobody_saw_it() -> None:
    v = verify(result([member("a", [1, 2])], events(2)), {ROOM: 5}, {0: 1}, 0.0)
    assert v.lost == 3


def test_an_accepted_gift_without_an_event_is_lost_for_every_member() -> None:
    # Three spends acknowledged, two events published.
    members = [member("s", [1, 2], sender_rows=3), member("a", [1, 2])]
    v = verify(result(members, events(2)), {ROOM: 2}, {0: 1}, 0.0)
    assert v.accepted_without_event == 1
    assert v.lost == 2


def test_slow_and_dropped_members_are_not_held_to_delivery() -> None:
    members = [member("s", [1, 2], sender_rows=2), member("slow", [], slow=True),
               member("gone", [1], connected=False)]
    v = verify(result(members, events(2)), {ROOM: 2}, {0: 1}, 0.0)
    assert v.lost == 0
    assert (v.members_counted, v.members_slow, v.members_dropped) == (1, 1, 1)


def test_a_click_shown_as_a_plain_gift_is_not_an_event_without_ack() -> None:
    # Rows: plain, click, click, plain. The combo settled (timeout) after the first click, so the
    # second, acked, is shown as a plain gift (room_event.lua): events 1 plain, 2 the combo of
    # one click, 3 the raced click, 4 plain.
    log = events(4)
    log.events[2] = ("e2", "gift", "s", "c1", 1)
    sender = member("s", [1, 2, 3, 4], sender_rows=4, kinds=[0, 1, 1, 0])
    v = verify(result([sender, member("a", [1, 2, 3, 4])], log), {ROOM: 4}, {0: 1, 1: 1}, 0.0)
    assert (v.clicks_shown_plain, v.events_without_ack, v.accepted_without_event) == (1, 0, 0)
    assert v.lost == 0


def test_a_plain_event_nobody_acked_is_still_counted() -> None:
    # Both clicks are inside the settled combo (event 2): plain events 1, 3 and 4 against two
    # plain acks leave one event that no ack stands for.
    log = events(4)
    log.events[2] = ("e2", "gift", "s", "c1", 2)
    sender = member("s", [1, 2, 3, 4], sender_rows=4, kinds=[0, 1, 1, 0])
    v = verify(result([sender, member("a", [1, 2, 3, 4])], log), {ROOM: 4}, {0: 1, 1: 1}, 0.0)
    assert (v.clicks_shown_plain, v.events_without_ack) == (0, 1)
