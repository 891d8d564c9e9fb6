"""A load-generator process: its own event loop (uvloop when installed), many members.

The parent talks to each worker over a pipe, in this order:
  worker -> ("ready", info)          all members connected and joined (or the errors)
  parent -> ("go", t0)               start sending at monotonic time t0 (shared by all workers)
  worker -> ("progress", counters)   every PROGRESS_S while running
  worker -> ("sent", info)           sending stopped, every gift in flight answered or given up
  parent -> ("final", {room: seq})   the last seq of each room; wait for members to reach it
  worker -> ("done", WorkerResult)
  parent -> ("stop",)                at any time: give up now and send what was recorded
Every wait is bounded: a dead server or parent never leaves a worker hanging. Every task the
worker starts is watched: an exception in one (a bug here, not a server fault) is recorded in
`WorkerResult.failures` and fails the run's verdict instead of dying unobserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loadtest.client import DUPLICATE, ConnSpec, Member, RoomLog, Shared, new_counters
from loadtest.reconnect import Reconnects
from loadtest.results import MemberResult, WorkerResult
from protocol import MsgpackCodec, Ping

PROGRESS_S = 0.5
CONNECT_PARALLEL = 100
TICK_S = 0.002
HEARTBEAT_S = 5.0  # until a welcome names the server's interval
HEARTBEAT_SHARE = 0.75  # ping at 3/4 of the interval: late pings are not idle timeouts
PING_SLICE = 100


@dataclass(frozen=True, slots=True)
class GiftMix:
    cheap: tuple[str, int]  # (gift id, price)
    streak: tuple[str, int] | None
    big: tuple[str, int]
    combo_share: float
    big_share: float


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    index: int
    urls: tuple[str, ...]
    conns: tuple[ConnSpec, ...]
    mix: GiftMix
    rate: float  # this worker's share of gifts/s; 0: closed loop (next gift on each answer)
    duration_s: float
    warmup_s: float
    settle_s: float
    reconnect: bool
    connect_timeout_s: float = 20.0


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.counters = new_counters()
        rooms = {spec.room: RoomLog() for spec in plan.conns}
        self.shared = Shared(MsgpackCodec(), rooms, {}, self.counters, self._changed)
        self.members = [
            Member(spec, plan.urls[i % len(plan.urls)], self.shared)
            for i, spec in enumerate(plan.conns)
        ]
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(maxsize=16)
        self.connect_errors: dict[str, int] = {}
        self.stopping = False
        self.failures: list[str] = []
        self.reconnects = Reconnects(plan.urls, plan.reconnect, self._spawn,
                                     lambda: self.stopping)
        self.changed = asyncio.Event()
        self.rng = random.Random(plan.index)

    def _changed(self) -> None:
        self.changed.set()

    # -- tasks --

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task whose exception, if any, is recorded as a failure of this worker."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._fail(task.get_name(), exc)

    def _fail(self, where: str, exc: BaseException) -> None:
        self.failures.append(f"{where}: {type(exc).__name__}: {exc}")
        traceback.print_exception(exc, file=sys.stderr)

    # -- parent pipe --

    def _read_pipe(self) -> None:
        while self.pipe.poll():
            try:
                msg = self.pipe.recv()
            except (EOFError, OSError):
                # The parent is gone: stop, and stop listening (EOF stays readable forever).
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())
                msg = ("stop",)
            if msg[0] == "stop":
                self.stopping = True
                self.changed.set()
            with contextlib.suppress(asyncio.QueueFull):
                self.inbox.put_nowait(msg)
            if msg[0] == "stop":
                return

    async def _expect(self, kind: str, timeout: float) -> tuple[Any, ...]:
        msg = await asyncio.wait_for(self.inbox.get(), timeout)
        if msg[0] != kind:
            raise _Stop(f"expected {kind!r} from the parent, got {msg[0]!r}")
        return msg

    # -- phases --

    async def run(self) -> WorkerResult:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._read_pipe)
        # uvloop makes the descriptor non-blocking; a large `send` would then be cut short.
        os.set_blocking(self.pipe.fileno(), True)
        aborted: str | None = None
        beat = self._spawn(self._heartbeat(), "heartbeat")
        try:
            await self._connect_all()
            self.pipe.send(("ready", {"connected": sum(m.connected for m in self.members),
                                      "errors": self.connect_errors}))
            (_, t0) = await self._expect("go", 600)
            await self._run_load(t0)
            self.pipe.send(("sent", dict(self.counters)))
            (_, finals) = await self._expect("final", 600)
            await self._settle(finals)
        except _Stop as stop:
            aborted = str(stop)
        except TimeoutError:
            aborted = "the parent did not answer in time"
        except Exception as exc:  # a bug in the load tester: report it, never die silently
            self._fail("run", exc)
            aborted = f"worker failed: {type(exc).__name__}: {exc}"
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            with contextlib.suppress(Exception):
                loop.remove_reader(self.pipe.fileno())
            os.set_blocking(self.pipe.fileno(), True)
            # Who was still in the room at the end, before closing makes every one "closing".
            connected = [m.connected for m in self.members]
            for m in self.members:
                m.close()
        return self._result(aborted, connected)

    async def _heartbeat(self) -> None:
        """A ping from every member within the server's heartbeat interval, as real clients do
        (even the slow ones: a stalled reader that still pings is the case D2 must handle).
        Spread over the interval in slices: 5,000 pings in one burst would be load of our own
        making on the server."""
        frame = self.shared.codec.encode_client(Ping())
        slices = max(1, len(self.members) // PING_SLICE)
        while True:
            interval = max(1.0, HEARTBEAT_SHARE * (self.shared.heartbeat_s or HEARTBEAT_S))
            for k in range(slices):
                await asyncio.sleep(interval / slices)
                for m in self.members[k::slices]:
                    if m.conn is not None:
                        m.conn.send(frame)

    async def _connect_all(self) -> None:
        sem = asyncio.Semaphore(CONNECT_PARALLEL)

        async def one(m: Member) -> None:
            async with sem:
                if self.stopping:
                    return
                try:
                    await m.open(self.plan.connect_timeout_s)
                except Exception as exc:  # refused, timed out, reset: counted by reason
                    key = str(exc)[:160] or type(exc).__name__
                    self.connect_errors[key] = self.connect_errors.get(key, 0) + 1
                    m.close()

        await asyncio.gather(*(one(m) for m in self.members))
        if self.stopping:
            raise _Stop("stopped by the parent while connecting")

    async def _run_load(self, t0: float) -> None:
        plan = self.plan
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        end = t0 + plan.duration_s
        reporter = self._spawn(self._report(end), "progress")
        slow_task = self._spawn(self._go_slow(t0 + plan.warmup_s), "go-slow")
        watcher = self._spawn(self._watch_drops(end + plan.settle_s), "watch-drops")
        senders = [m for m in self.members if m.spec.sender and m.connected]
        try:
            if plan.rate > 0:
                await self._open_loop(senders, t0, end)
            else:
                await asyncio.gather(*(self._closed_loop(m, end) for m in senders))
            # Let the last answers arrive; a sender whose server died gives up after the bound.
            await asyncio.wait_for(
                asyncio.gather(*(self._finish(m) for m in senders)), plan.settle_s
            )
        except TimeoutError:
            pass
        finally:
            for task in (reporter, slow_task, watcher):
                task.cancel()
            await asyncio.gather(reporter, slow_task, watcher, return_exceptions=True)
        if self.stopping:
            raise _Stop("stopped by the parent")

    async def _go_slow(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        for m in self.members:
            if m.spec.slow and m.conn is not None:
                m.conn.pause()

    async def _report(self, end: float) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            self.pipe.send(("progress", time.monotonic(), dict(self.counters)))

    async def _open_loop(self, senders: list[Member], t0: float, end: float) -> None:
        """Gifts at a fixed rate, handed to whichever sender has nothing in flight."""
        idle: deque[Member] = deque(senders)
        busy: set[asyncio.Task[None]] = set()
        issued = 0
        while not self.stopping:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - t0) * self.plan.rate) - issued
            while due > 0 and idle:
                m = idle.popleft()
                task = self._spawn(self._one_gift(m, end), f"gift-{m.spec.user}")
                busy.add(task)
                task.add_done_callback(lambda t, m=m: (busy.discard(t), idle.append(m)))
                issued += 1
                due -= 1
            if due > 0:
                self.counters["behind"] = self.counters.get("behind", 0) + due
                issued += due  # no idle sender: the server is slower than the target rate
            await asyncio.sleep(TICK_S)
        if busy:
            await asyncio.wait(busy, timeout=self.plan.settle_s)
            for task in busy:  # still unanswered after the bound: given up (rows unanswered)
                task.cancel()

    async def _closed_loop(self, m: Member, end: float) -> None:
        while not self.stopping and time.monotonic() < end and m.connected:
            await self._one_gift(m, end)

    async def _one_gift(self, m: Member, end: float) -> None:
        """One click: a plain gift, a big one, or the next click of this sender's streak."""
        if not m.connected:
            # Mid-reconnect (chaos): a gift sent before the join completes would be refused.
            if self.plan.reconnect:
                await self.reconnects.ensure_connected(m, end + self.plan.settle_s)
            if not m.connected:
                return
        mix = self.plan.mix
        if m.combo is None and mix.streak is not None and self.rng.random() < mix.combo_share:
            m.combo = (f"c{m.spec.user}.{len(m.send_t)}", mix.streak[0], self.rng.randint(3, 8))
        if m.combo is not None:
            combo, gift, left = m.combo
            m.send_gift(gift, 1, 1, combo)
            await self._await_answer(m, end)
            if m.send_code[-1] > DUPLICATE:
                # Refused (combo_not_found: it settled on the server's timeout while this click
                # waited): as the protocol says, the next click starts a new combo.
                m.combo = None
            elif left <= 1:
                m.end_combo(combo)
                m.combo = None
            else:
                m.combo = (combo, gift, left - 1)
            return
        big = self.rng.random() < mix.big_share
        gift = mix.big[0] if big else mix.cheap[0]
        m.send_gift(gift, 1, 2 if big else 0)
        await self._await_answer(m, end)

    async def _await_answer(self, m: Member, end: float) -> None:
        await self.reconnects.until_answered(m, end + self.plan.settle_s)

    async def _watch_drops(self, deadline: float) -> None:
        """Chaos: a member whose server went away reconnects at once and resumes from history."""
        if not self.plan.reconnect:
            return
        while True:
            await self.changed.wait()
            self.changed.clear()
            for m in self.members:
                if not m.connected and not m.spec.slow and m not in self.reconnects.under_way:
                    self.reconnects.start(m, deadline)

    async def _finish(self, m: Member) -> None:
        if m.pending is not None:
            await self.reconnects.until_answered(m, time.monotonic() + self.plan.settle_s)
        if m.combo is not None:
            m.end_combo(m.combo[0])
            m.combo = None

    async def _settle(self, finals: dict[str, int]) -> None:
        """Wait until every reading member has the room's last event, or the bound passes."""
        deadline = time.monotonic() + self.plan.settle_s
        while time.monotonic() < deadline and not self.stopping:
            if self.plan.reconnect:
                dropped = [m for m in self.members if not m.connected and not m.spec.slow]
                again = self.reconnects.ensure_connected
                await asyncio.gather(*(again(m, deadline) for m in dropped))
            behind = [
                m for m in self.members
                if m.connected and not m.spec.slow and m.last_seq < finals.get(m.spec.room, 0)
            ]
            if not behind:
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.05)

    def _result(self, aborted: str | None, connected: list[bool] | None = None) -> WorkerResult:
        still = connected if connected is not None else [m.connected for m in self.members]
        members = [
            MemberResult(
                user=m.spec.user, room=m.spec.room, overlay=m.spec.overlay,
                sender=m.spec.sender, slow=m.spec.slow, joined_seq=m.joined_seq,
                connected=was, gap=m.gap, closes=m.closes,
                recv_seq=m.recv_seq.tobytes(), recv_t=m.recv_t.tobytes(),
                send_t=m.send_t.tobytes(), send_ack=m.send_ack.tobytes(),
                send_code=m.send_code.tobytes(), send_kind=m.send_kind.tobytes(),
            )
            for m, was in zip(self.members, still, strict=True)
        ]
        return WorkerResult(
            self.plan.index, members, self.shared.rooms, self.shared.errors,
            self.connect_errors, self.reconnects.count, aborted, self.counters["frames"],
            list(self.failures), self.counters["state"],
        )


class _Stop(Exception):
    pass


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """Entry point of a worker process."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(Worker(plan, pipe).run())
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.send(("done", result))
    pipe.close()
