"""End-of-run verification: lost, duplicated and out-of-order deliveries, and the latencies.

A room's events are identified by `seq` (the eid must agree wherever the same seq is seen). A
member counts towards `deliveries_expected` when it reads (not one of the slow ones) and is
connected at the end without a history gap: it must then hold every seq from its join to the
room's last seq, each once, in order. Members that reconnected and resumed count too: that is the
recovery promise (D1). An accepted gift whose event nobody saw is lost for every counted member.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from loadtest.client import ACCEPTED, DUPLICATE
from loadtest.results import MemberResult, WorkerResult

PLAIN_KINDS = (0, 2)  # cheap and big gifts: one event each; streak clicks settle as combos


@dataclass
class Verification:
    gifts_sent: int = 0
    gifts_accepted: int = 0
    gifts_unanswered: int = 0
    acks_duplicate: int = 0  # resent after a reconnect and answered with the first result (M2)
    gifts_rejected: dict[str, int] = field(default_factory=dict)
    coins_accepted: int = 0
    ack_s: list[float] = field(default_factory=list)
    ack_points: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ack s)
    delivery_s: list[float] = field(default_factory=list)
    delivery_points: list[tuple[float, float]] = field(default_factory=list)
    expected: int = 0
    receipts: int = 0  # event deliveries read by non-slow members, whatever they were
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    eid_conflicts: int = 0
    accepted_without_event: int = 0
    events_without_ack: int = 0
    # Streak clicks acked after their combo had settled (on its server-side timeout): the server
    # shows each as a plain gift event (room_event.lua) rather than reopen the combo. Acked, so
    # not an event without an ack; counted apart so a real one still shows (failover runs).
    clicks_shown_plain: int = 0
    members_counted: int = 0
    members_slow: int = 0
    members_dropped: int = 0
    members_gap: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    final_seqs: dict[str, int] = field(default_factory=dict)
    missing_by_room: dict[str, int] = field(default_factory=dict)


def _floats(raw: bytes) -> array[float]:
    a = array("d")
    a.frombytes(raw)
    return a


def _ints(raw: bytes, code: str = "q") -> array[int]:
    a = array(code)
    a.frombytes(raw)
    return a


def verify(
    results: list[WorkerResult],
    finals: dict[str, int],
    prices: dict[int, int],
    t0: float,
    sample_every: int = 1,
) -> Verification:
    v = Verification()
    errors: dict[int, str] = {}
    events: dict[str, dict[int, tuple[str, str, str, str | None, int]]] = defaultdict(dict)
    for r in results:
        errors.update({idx: code for code, idx in r.errors.items()})
        for room, log in r.rooms.items():
            v.eid_conflicts += log.conflicts
            merged = events[room]
            for seq, meta in log.events.items():
                known = merged.setdefault(seq, meta)
                if known[0] != meta[0]:
                    v.eid_conflicts += 1
    members = [m for r in results for m in r.members]
    for room in {m.room for m in members}:
        seen = max(events[room], default=0)
        v.final_seqs[room] = max(finals.get(room, 0), seen)

    send_time = _match_sends(v, members, events, prices, errors, t0)
    counted_per_room: dict[str, int] = defaultdict(int)
    for m in members:
        for code in m.closes:
            key = str(code)
            v.close_codes[key] = v.close_codes.get(key, 0) + 1
        counted = _tally_member(v, m, send_time.get(m.room, {}), t0, sample_every)
        if counted:
            counted_per_room[m.room] += 1
    # Accepted gifts that produced no event at all are lost for every member that should have
    # had them; they are not in any seq range, so add them here.
    for room, missing in v.missing_by_room.items():
        v.lost += missing * counted_per_room[room]
        v.expected += missing * counted_per_room[room]
    return v


def _match_sends(
    v: Verification,
    members: list[MemberResult],
    events: dict[str, dict[int, tuple[str, str, str, str | None, int]]],
    prices: dict[int, int],
    errors: dict[int, str],
    t0: float,
) -> dict[str, dict[int, float]]:
    """Tally the send logs and tie each plain gift event's seq to its send time."""
    send_time: dict[str, dict[int, float]] = defaultdict(dict)
    missing = v.missing_by_room
    by_sender: dict[tuple[str, str], list[int]] = defaultdict(list)
    in_combos: dict[tuple[str, str], int] = defaultdict(int)  # clicks inside settled combo events
    for room, evs in events.items():
        for seq in sorted(evs):
            _eid, kind, sender, combo, count = evs[seq]
            if kind == "gift" and combo is None:
                by_sender[(room, sender)].append(seq)
            elif kind == "gift":
                in_combos[(room, sender)] += count
    for m in members:
        sent_t, ack_t = _floats(m.send_t), _floats(m.send_ack)
        codes, kinds = _ints(m.send_code, "b"), _ints(m.send_kind, "b")
        v.gifts_sent += len(sent_t)
        plain_accepted: list[float] = []
        clicks_accepted = 0
        for i in range(len(sent_t)):
            code = codes[i]
            if code in (ACCEPTED, DUPLICATE):
                v.gifts_accepted += 1
                v.acks_duplicate += code == DUPLICATE
                v.coins_accepted += prices.get(kinds[i], 0)
                if kinds[i] in PLAIN_KINDS:
                    plain_accepted.append(sent_t[i])
                else:
                    clicks_accepted += 1
            elif code < 0:
                v.gifts_unanswered += 1
            else:
                name = errors.get(code, f"code{code}")
                v.gifts_rejected[name] = v.gifts_rejected.get(name, 0) + 1
            if ack_t[i] == ack_t[i]:  # not nan: answered
                v.ack_s.append(ack_t[i] - sent_t[i])
                v.ack_points.append((sent_t[i] - t0, ack_t[i] - sent_t[i]))
        if not m.sender:
            continue
        seqs = by_sender.get((m.room, m.user), [])
        raced = max(0, clicks_accepted - in_combos[(m.room, m.user)])
        surplus = len(seqs) - len(plain_accepted)
        if surplus <= 0 or raced == 0:
            # With a click shown as a plain gift among them the send times would pair with the
            # wrong events (which click raced is not known): no latencies from this sender then.
            for seq, sent in zip(seqs, plain_accepted, strict=False):
                send_time[m.room][seq] = sent
        if surplus < 0:
            missing[m.room] = missing.get(m.room, 0) - surplus
            v.accepted_without_event -= surplus
        elif surplus > 0:
            v.clicks_shown_plain += min(surplus, raced)
            v.events_without_ack += surplus - min(surplus, raced)
    return send_time


def _tally_member(
    v: Verification, m: MemberResult, send_time: dict[int, float], t0: float, sample_every: int
) -> bool:
    seqs, times = _ints(m.recv_seq), _floats(m.recv_t)
    if not m.slow:
        v.receipts += len(seqs)
    seen: set[int] = set()
    highest = 0
    for i, seq in enumerate(seqs):
        if seq in seen:
            v.duplicated += 1
            continue
        seen.add(seq)
        if seq < highest:
            v.out_of_order += 1
        else:
            highest = seq
        if not m.slow:
            sent = send_time.get(seq)
            if sent is not None:
                latency = times[i] - sent
                v.delivery_s.append(latency)
                if i % sample_every == 0:
                    v.delivery_points.append((times[i] - t0, latency))
    if m.slow:
        v.members_slow += 1
        return False
    if m.gap:
        v.members_gap += 1
        return False
    if not m.connected or m.joined_seq < 0:
        v.members_dropped += 1
        return False
    v.members_counted += 1
    final = v.final_seqs.get(m.room, 0)
    want = range(m.joined_seq + 1, final + 1)
    v.expected += len(want)
    got = sum(1 for s in want if s in seen)
    v.received += got
    v.lost += len(want) - got
    return True


def as_dict(v: Verification) -> dict[str, Any]:
    return {k: val for k, val in v.__dict__.items()
            if not k.startswith("_") and not isinstance(val, list)}
