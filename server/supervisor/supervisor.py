"""The supervisor: N worker processes on one port, restarted when they die, drained together.

It runs no event loop work of its own beyond this: start each worker (`python -m server serve`
with the worker's environment), wait for it to exit, and start it again after a backoff that
doubles while workers keep dying young (a crash loop must not spin the CPU) and resets once one
has lived `STABLE_S`. On SIGTERM or SIGINT every worker gets SIGTERM and drains as a lone server
would (going_away to its clients, close 1001), within `drain_timeout_s`; a worker still running
`KILL_GRACE_S` after that is killed. A second signal kills them at once.

Workers are started in a process group of their own, so a terminal's Ctrl-C reaches only the
supervisor, which then drains them once (a worker receiving both SIGINT and SIGTERM would take the
second for "stop now").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

from prometheus_client.multiprocess import mark_process_dead

from server.runtime import WORKER_ENV
from server.supervisor.worker import SUPERVISOR_FD_ENV

log = logging.getLogger("giftwire.supervisor")

BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 30.0  # a worker that lived this long died of something new: restart at once
KILL_GRACE_S = 10.0


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def backoff_s(young_deaths: int) -> float:
    """The wait before restarting a worker that died young `young_deaths` times in a row."""
    if young_deaths <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (young_deaths - 1))


class Supervisor:
    def __init__(self, count: int, env: Mapping[str, str], metrics_dir: str,
                 drain_timeout_s: float) -> None:
        self.count = count
        self._env = dict(env)
        self._metrics_dir = metrics_dir
        self._drain_timeout_s = drain_timeout_s
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        # The workers' lifeline: they hold the read end; when this process is gone, they read EOF.
        self._life_r, self._life_w = os.pipe()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("supervisor (pid %d) starting %d workers", os.getpid(), self.count)
        codes = await asyncio.gather(*(self._keep(i) for i in range(self.count)))
        os.close(self._life_r)
        os.close(self._life_w)
        log.info("every worker stopped (%s)",
                 ", ".join(describe_exit(c) for c in codes))
        return 0 if all(c == 0 for c in codes) else 1

    def _on_signal(self, sig: int) -> None:
        if self._stopping.is_set():
            log.warning("second %s, killing the workers", signal.Signals(sig).name)
            self._forced.set()
            for proc in self._procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            return
        log.info("%s, draining %d workers", signal.Signals(sig).name, len(self._procs))
        self._stopping.set()

    async def _start(self, index: int) -> asyncio.subprocess.Process:
        env = {**self._env, WORKER_ENV: str(index), SUPERVISOR_FD_ENV: str(self._life_r),
               "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve", env=env, stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(self._life_r,), process_group=0,
        )
        self._procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    async def _keep(self, index: int) -> int:
        """Keep slot `index` filled until the drain; the last worker's exit status."""
        young_deaths = 0
        while True:
            proc = await self._start(index)
            born = time.monotonic()
            exited = asyncio.ensure_future(proc.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if self._stopping.is_set():
                return await self._drain(index, proc, exited)
            code = exited.result()
            mark_process_dead(proc.pid, self._metrics_dir)  # its live gauges leave /metrics
            young_deaths = young_deaths + 1 if time.monotonic() - born < STABLE_S else 0
            delay = backoff_s(young_deaths)
            self.restarts += 1
            log.warning("worker %d (pid %d) died (%s); restarting in %.1fs",
                        index, proc.pid, describe_exit(code), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return 0

    async def _drain(self, index: int, proc: asyncio.subprocess.Process,
                     exited: asyncio.Future[int]) -> int:
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            forced = asyncio.ensure_future(self._forced.wait())
            await asyncio.wait({exited, forced}, timeout=self._drain_timeout_s + KILL_GRACE_S,
                               return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if not exited.done():
                log.error("worker %d (pid %d) did not drain in time; killing it",
                          index, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        code = await exited
        mark_process_dead(proc.pid, self._metrics_dir)
        self._procs.pop(index, None)
        log.info("worker %d (pid %d) stopped (%s)", index, proc.pid,
                 describe_exit(code))
        return code
