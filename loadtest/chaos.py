"""The chaos scenario's faults: SIGKILL the flusher and one of two servers mid-run, restart both.

Times are fractions of the run's duration, so a shorter `--duration` keeps the same shape. Every
event lands in the report with the moment it happened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadtest.scenarios import Plan
from loadtest.spawn import ServerProcess
from server.storage.cluster.local import LocalCluster

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


async def kill_master(plan: Plan, cluster: LocalCluster, key: str, t0: float,
                      events: list[dict[str, Any]]) -> None:
    """`--kill-master S`: SIGKILL the cluster master serving `key` (the first room's slot, so
    fan-out and some wallet shards fail over) S seconds into the load; note when its replica
    has taken over."""
    await asyncio.sleep(max(0.0, t0 + plan.kill_master_s - time.monotonic()))  # the schedule
    port = await asyncio.to_thread(cluster.owner, key)
    at = round(time.monotonic() - t0, 3)
    await asyncio.to_thread(cluster.kill, port)
    events.append({"t": at, "event": f"SIGKILL redis master :{port}"})
    heir = await asyncio.to_thread(cluster.wait_promoted, port)
    events.append({"t": round(time.monotonic() - t0, 3), "event": f"replica :{heir} promoted",
                   "failover_s": round(time.monotonic() - t0 - at, 3)})
