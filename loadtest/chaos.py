"""The chaos scenario's faults: SIGKILL the flusher and one of two servers mid-run, restart both.

Times are fractions of the run's duration, so a shorter `--duration` keeps the same shape. Every
event lands in the report with the moment it happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from loadtest.scenarios import Plan
from loadtest.spawn import ServerProcess
from server.storage.cluster.local import LocalCluster
from server.storage.keys import cluster_slot

SlotRanges = list[tuple[int, int, int]]  # (first slot, last slot, master port)
MAX_TRIES = 10_000  # names tried per room; each lands on a given master ~1 in (masters) times

SCHEDULE = (
    (0.25, "kill", "flusher"),
    (0.35, "kill", "server"),
    (0.55, "restart", "flusher"),
    (0.65, "restart", "server"),
)


async def run(plan: Plan, flusher: ServerProcess | None, server: ServerProcess, t0: float,
              events: list[dict[str, Any]]) -> None:
    """Kill and restart `flusher` (a `giftwire flush` process) and `server` on SCHEDULE."""
    for fraction, action, what in SCHEDULE:
        await asyncio.sleep(max(0.0, t0 + fraction * plan.duration_s - time.monotonic()))
        proc = flusher if what == "flusher" else server
        if proc is None:
            continue
        at = round(time.monotonic() - t0, 3)
        if action == "kill":
            pid = proc.pid
            await asyncio.to_thread(proc.kill)
            events.append({"t": at, "event": f"SIGKILL {what}", "pid": pid})
        else:
            proc.start()
            if what == "server":
                await asyncio.to_thread(proc.wait_ready)
            events.append({"t": at, "event": f"restarted {what}", "pid": proc.pid,
                           "ready_after_s": round(time.monotonic() - t0 - at, 3)})


def master_of(slot_key: str, ranges: SlotRanges) -> int:
    slot = cluster_slot(slot_key)
    return next(port for lo, hi, port in ranges if lo <= slot <= hi)


def place_rooms(run: str, count: int, slot_key: Callable[[str], str],
                ranges: SlotRanges) -> list[str]:
    """Room names whose slots go round the masters (room i on master i mod masters), so two or
    more rooms always sit on at least two masters. Else a run's verdict would hang on where CRC16
    happened to put its rooms: with every room on the killed master every member is told `gap`
    and the run proves nothing; with none on it the failover never touches fan-out."""
    masters = sorted({port for _lo, _hi, port in ranges})
    rooms: list[str] = []
    for i in range(count):
        want = masters[i % len(masters)]
        for k in range(MAX_TRIES):
            name = f"{run}-r{i}" if k == 0 else f"{run}-r{i}-{k}"
            if master_of(slot_key(name), ranges) == want:
                rooms.append(name)
                break
        else:  # CRC16 spreads evenly; this means the slot map is not what it seems
            raise LookupError(f"no room name for master :{want} in {MAX_TRIES} tries")
    return rooms


def split_victim(rooms: list[str], slot_key: Callable[[str], str], ranges: SlotRanges) -> int:
    """The master to kill: it serves the first room but not every room, so the run has members
    that may be told `gap` and members that must still get every event."""
    owners = [master_of(slot_key(room), ranges) for room in rooms]
    if all(port == owners[0] for port in owners):
        raise LookupError(f"all {len(rooms)} room(s) are on master :{owners[0]}: killing it "
                          "would leave no member held to delivery")
    return owners[0]


async def kill_master(plan: Plan, cluster: LocalCluster, rooms: list[str],
                      slot_key: Callable[[str], str], t0: float,
                      events: list[dict[str, Any]]) -> None:
    """`--kill-master S`: SIGKILL the cluster master serving some rooms but not all (so fan-out
    and some wallet shards fail over while other rooms carry on) S seconds into the load; note
    when its replica has taken over."""
    ranges = await asyncio.to_thread(cluster.slot_ranges)
    port = split_victim(rooms, slot_key, ranges)  # before the load: a bad layout fails at once
    on_it = [room for room in rooms if master_of(slot_key(room), ranges) == port]
    await asyncio.sleep(max(0.0, t0 + plan.kill_master_s - time.monotonic()))  # the schedule
    at = round(time.monotonic() - t0, 3)
    await asyncio.to_thread(cluster.kill, port)
    events.append({"t": at, "event": f"SIGKILL redis master :{port}", "rooms_on_it": on_it,
                   "rooms": len(rooms)})
    heir = await asyncio.to_thread(cluster.wait_promoted, port)
    events.append({"t": round(time.monotonic() - t0, 3), "event": f"replica :{heir} promoted",
                   "failover_s": round(time.monotonic() - t0 - at, 3)})
