"""The load tester's room placement on a real cluster: rooms land on different masters, and the
master the failover smoke kills holds some rooms but never all (else its verdict hangs on where
CRC16 happened to put the rooms: BENCHMARKS.md, "Redis Cluster")."""

from __future__ import annotations

import pytest

from loadtest.chaos import place_rooms, split_victim
from server.storage.keys import Keys
from tests.support.cluster import LocalCluster

KEYS = Keys("place:", 4)


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_rooms_span_the_masters_and_the_victim_splits_them(
    redis_cluster: LocalCluster, count: int
) -> None:
    ranges = redis_cluster.slot_ranges()
    assert len({port for _lo, _hi, port in ranges}) == 3
    rooms = place_rooms("run1", count, KEYS.room_seq, ranges)
    assert len(set(rooms)) == count
    # Where Redis itself (CLUSTER KEYSLOT, not our CRC16) says each room's keys live.
    owners = [redis_cluster.owner(KEYS.room_seq(room)) for room in rooms]
    assert len(set(owners)) == min(count, 3)
    assert owners == [owners[i % 3] for i in range(count)]  # round the masters
    victim = split_victim(rooms, KEYS.room_seq, ranges)
    assert victim == owners[0]
    assert 0 < owners.count(victim) < count


def test_a_layout_on_one_master_is_refused(redis_cluster: LocalCluster) -> None:
    rooms = place_rooms("run2", 4, KEYS.room_seq, redis_cluster.slot_ranges())
    same = [rooms[0], rooms[3]]  # rooms 0 and 3 share a master (round three masters)
    owner = redis_cluster.owner
    assert owner(KEYS.room_seq(same[0])) == owner(KEYS.room_seq(same[1]))
    for layout in (same, rooms[:1]):
        with pytest.raises(LookupError, match="would leave no member held to delivery"):
            split_victim(layout, KEYS.room_seq, redis_cluster.slot_ranges())
