"""Each server process's heartbeat: its own numbers in Redis, for the operator view (`/admin`).

Every `INTERVAL_S` a process writes one small JSON document under `keys.process(name)` with a TTL
of `TTL_S` and its name into the `keys.processes()` index: its connections, rooms, events and
deliveries per second (from its own counters), slow-client disconnects, rate-limit and error
counts (error frames, HTTP problems, WebSockets closed for a broken limit), its flusher's consumer
name, whether it drains. A process that dies simply stops beating and its entry expires; a process
that stops cleanly removes its entry at once. No process reads another's memory: the view is what
the processes published, at most `INTERVAL_S` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from prometheus_client import Counter

from server.runtime import Runtime, log_failure, process_name, worker_index

log = logging.getLogger("giftwire.heartbeat")

INTERVAL_S = 1.0
TTL_S = 5  # a process silent this long has left the view (died, or cut off from Redis)


def _by_label(counter: Counter, label: str) -> dict[str, float]:
    """This process's own value of each child of a labelled counter (also under the
    multiprocess mode, whose `collect` reads only this process's file)."""
    out: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _total(counter: Counter) -> float:
    return sum(_by_label(counter, "").values())


def _counts(counter: Counter, label: str, *, keep_zero: bool = False) -> dict[str, int]:
    """`_by_label` as whole counts, the children still at zero left out unless `keep_zero`."""
    return {k: int(v) for k, v in _by_label(counter, label).items() if v or keep_zero}


class Heartbeat:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.name = process_name()
        self._started_at = int(time.time() * 1000)
        self._last: tuple[float, float, float] | None = None  # (monotonic, events, deliveries)
        self._task: asyncio.Task[None] | None = None

    def numbers(self) -> dict[str, Any]:
        """This process's numbers, as published."""
        rt, m = self._rt, self._rt.metrics
        now = time.monotonic()
        events, deliveries = _total(m.events), _total(m.deliveries)
        rates = {"events_per_s": 0.0, "deliveries_per_s": 0.0}
        if self._last is not None and now > self._last[0]:
            span = now - self._last[0]
            rates = {"events_per_s": round((events - self._last[1]) / span, 1),
                     "deliveries_per_s": round((deliveries - self._last[2]) / span, 1)}
        self._last = (now, events, deliveries)
        realtime = rt.components.get("realtime")
        errors, http = _counts(m.protocol_errors, "code"), _counts(m.http_problems, "code")
        closes = _counts(m.edge_closes, "code")
        flusher = rt.components.get("flusher")
        return {
            "process": self.name, "worker": worker_index(), "pid": os.getpid(),
            "host": socket.gethostname(), "started_at": self._started_at,
            "at": int(time.time() * 1000), "draining": rt.draining,
            "connections": len(realtime.connections) if realtime is not None else 0,
            "rooms": len(realtime.hub.rooms) if realtime is not None else 0,
            **rates,
            "slow_disconnects": int(_total(m.slow_disconnects)),
            # WebSocket error frames, HTTP problem responses and the edge's closes for a broken
            # limit together (by code, each).
            "rate_limited": errors.get("rate_limited", 0) + http.get("rate_limited", 0),
            "errors": sum(errors.values()) + sum(http.values()) + sum(closes.values()),
            "errors_by_code": errors, "http_problems_by_code": http,
            "edge_closes_by_code": closes,
            "spends": _counts(m.spends, "outcome", keep_zero=True),
            "flusher": getattr(flusher, "name", None),
        }

    async def beat(self) -> None:
        rt = self._rt
        doc = json.dumps(self.numbers(), separators=(",", ":"))
        async with rt.redis.pipeline(transaction=False) as pipe:
            pipe.set(rt.keys.process(self.name), doc, ex=TTL_S)
            pipe.zadd(rt.keys.processes(), {self.name: int(time.time() * 1000)})
            # The index forgets processes whose heartbeat has expired.
            pipe.zremrangebyscore(rt.keys.processes(), 0, int((time.time() - TTL_S) * 1000))
            await pipe.execute()

    async def _beat_or_log(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # Redis down: the view shows this process as gone
            log_failure(log, "heartbeat", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)  # the beat's period
            await self._beat_or_log()

    async def start(self) -> None:
        """The first beat before the process serves: it is in the view once it is ready."""
        await self._beat_or_log()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        rt = self._rt
        with contextlib.suppress(Exception):  # leaving the view is a courtesy, not a must
            async with rt.redis.pipeline(transaction=False) as pipe:
                pipe.delete(rt.keys.process(self.name))
                pipe.zrem(rt.keys.processes(), self.name)
                await pipe.execute()


async def read_processes(rt: Runtime) -> list[dict[str, Any]]:
    """Every live process's last heartbeat, by worker slot then name."""
    names = [n.decode() for n in await rt.redis.zrangebyscore(
        rt.keys.processes(), int((time.time() - TTL_S) * 1000), "+inf")]
    if not names:
        return []
    docs = await rt.redis.mget([rt.keys.process(n) for n in names])
    found = [json.loads(d) for d in docs if d]
    return sorted(found, key=lambda d: (d.get("worker") is None, d.get("worker") or 0,
                                        d["process"]))
