"""The parent's side of the worker processes: start them, talk to them, never wait unbounded.

Each worker is a `multiprocessing` process (spawn: no inherited event loop or sockets) with a
duplex pipe. The parent's event loop reads every pipe through `add_reader`, so progress from all
workers arrives as it is sent and a dead worker is noticed (EOF) instead of waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from loadtest.results import WorkerResult
from loadtest.worker import WorkerPlan, worker_main


@dataclass
class WorkerHandle:
    plan: WorkerPlan
    process: BaseProcess
    pipe: Connection
    inbox: asyncio.Queue[tuple[Any, ...]]
    last: dict[str, int] = field(default_factory=dict)
    gone: bool = False


class Fleet:
    def __init__(self, plans: list[WorkerPlan], on_progress: Callable[[int, float, dict[str, int]],
                                                                       None]) -> None:
        self.plans = plans
        self.on_progress = on_progress
        self.handles: list[WorkerHandle] = []

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for plan in self.plans:
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=worker_main, args=(plan, child), daemon=True,
                               name=f"loadtest-worker-{plan.index}")
            proc.start()
            child.close()
            handle = WorkerHandle(plan, proc, parent, asyncio.Queue(maxsize=64))
            self.handles.append(handle)
            loop.add_reader(parent.fileno(), self._readable, handle)
            # An event loop may make the descriptor non-blocking (uvloop does); a large result
            # then arrives in pieces, and `recv` must wait for the rest instead of failing.
            os.set_blocking(parent.fileno(), True)

    @property
    def pids(self) -> list[int]:
        return [h.process.pid for h in self.handles if h.process.pid is not None]

    def _readable(self, h: WorkerHandle) -> None:
        try:
            while h.pipe.poll():
                msg = h.pipe.recv()
                if msg[0] == "progress":
                    h.last = msg[2]
                    self.on_progress(h.plan.index, msg[1], msg[2])
                else:
                    h.inbox.put_nowait(msg)
        except (EOFError, OSError):
            self._gone(h)

    def _gone(self, h: WorkerHandle) -> None:
        if not h.gone:
            h.gone = True
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(h.pipe.fileno())
            with contextlib.suppress(asyncio.QueueFull):
                h.inbox.put_nowait(("gone",))

    def send(self, msg: tuple[Any, ...]) -> None:
        for h in self.handles:
            if not h.gone:
                with contextlib.suppress(OSError, BrokenPipeError):
                    h.pipe.send(msg)

    async def gather(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        """The next message of `kind` from every worker; raises FleetError otherwise."""
        deadline = time.monotonic() + timeout

        async def one(h: WorkerHandle) -> tuple[Any, ...]:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FleetError(f"worker {h.plan.index} sent no {kind!r} in {timeout:.0f}s")
                try:
                    msg = await asyncio.wait_for(h.inbox.get(), left)
                except TimeoutError:
                    continue
                if msg[0] == kind:
                    return msg
                if msg[0] in ("gone", "done"):
                    if kind == "done" and msg[0] == "done":
                        return msg
                    raise FleetError(f"worker {h.plan.index} ended early (waiting for {kind!r})")

        return list(await asyncio.gather(*(one(h) for h in self.handles)))

    async def results(self, timeout: float) -> list[WorkerResult]:
        msgs = await self.gather("done", timeout)
        return [m[1] for m in msgs]

    async def stop(self) -> None:
        """Tell every worker to stop; give them a moment, then end the stragglers."""
        self.send(("stop",))
        deadline = time.monotonic() + 10
        for h in self.handles:
            left = max(0.1, deadline - time.monotonic())
            await asyncio.to_thread(h.process.join, left)
            if h.process.is_alive():
                h.process.kill()
                await asyncio.to_thread(h.process.join, 5)
            self._gone(h)
            h.pipe.close()


class FleetError(RuntimeError):
    pass
