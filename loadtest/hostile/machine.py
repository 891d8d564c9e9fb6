"""What the machine did during one window of a hostile run: the server's CPU and run-queue wait,
the pair's, its embedded Redis's and Postgres's CPU, how busy the server side's and the
attacker's cores were (softirq and the hypervisor's steal apart), the load average, and the
server's peak RSS. Enough to tell an attack that costs the server from a core taken by
something else."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from loadtest.cpu import busy_seconds, cpu_seconds

Figures = dict[str, float | None]


class WindowCpu:
    """CPU over one window. `server_cpu_s`: the server's user + system seconds;
    `server_runq_wait_s` / `pair_runq_wait_s`: seconds their threads were ready to run but
    waited for a core (Linux schedstat); `redis_cpu_s` / `postgres_cpu_s`: the embedded ones';
    `pair_cpu_s`: the harness process (the pair's clients); `server_side_busy_s`,
    `..._softirq_s`, `..._steal_s` and the same for `attacker_side`: the cores of each side
    (from /proc/stat: busy is user + nice + system + irq + softirq); `load1` at the end."""

    def __init__(self, pid: int, services: Callable[[], dict[str, list[int]]] | None = None,
                 sides: dict[str, Sequence[int]] | None = None) -> None:
        self.proc = psutil.Process(pid)
        self.services = services or dict
        self.sides = sides or {}
        self.start = _cpu_s(pid)
        self.start_wait = runqueue_wait_s(pid)
        self.start_pair_wait = runqueue_wait_s(os.getpid())  # the pair runs in this process
        self.start_pair = _cpu_s(os.getpid())
        self.start_services = {k: _sum_cpu_s(p) for k, p in self.services().items()}
        self.start_cores = {k: core_seconds(c) for k, c in self.sides.items()}

    def figures(self) -> Figures:
        out: Figures = {
            "server_cpu_s": _since(_cpu_s(self.proc.pid), self.start),
            "server_runq_wait_s": _since(runqueue_wait_s(self.proc.pid), self.start_wait),
            "pair_runq_wait_s": _since(runqueue_wait_s(os.getpid()), self.start_pair_wait),
            "pair_cpu_s": _since(_cpu_s(os.getpid()), self.start_pair)}
        for name, pids in self.services().items():
            out[f"{name}_cpu_s"] = _since(_sum_cpu_s(pids), self.start_services.get(name))
        for side, cores in self.sides.items():
            now, then = core_seconds(cores), self.start_cores[side]
            for key in now:
                out[f"{side}_{key}_s"] = round(now[key] - then[key], 2)
        out["load1"] = round(os.getloadavg()[0], 2)
        return out


def _since(now: float | None, start: float | None) -> float | None:
    return None if now is None or start is None else round(now - start, 2)


def _cpu_s(pid: int) -> float | None:
    try:
        return cpu_seconds(psutil.Process(pid))
    except psutil.Error:
        return None


def _sum_cpu_s(pids: list[int]) -> float | None:
    """Summed over processes that may come and go (Postgres backends): a window's figure is the
    difference of two sums, so a backend that ended meanwhile makes it an underestimate."""
    values = [v for v in map(_cpu_s, pids) if v is not None]
    return sum(values) if values else None


def core_seconds(cores: Sequence[int]) -> dict[str, float]:
    """busy / softirq / steal seconds so far, summed over `cores`."""
    per_core = psutil.cpu_times(percpu=True)
    picked = [per_core[c] for c in cores if c < len(per_core)]
    return {"busy": sum(map(busy_seconds, picked)),
            "softirq": sum(getattr(t, "softirq", 0.0) for t in picked),
            "steal": sum(getattr(t, "steal", 0.0) for t in picked)}


def runqueue_wait_s(pid: int) -> float | None:
    """Seconds the process's threads have waited on a run queue (None off Linux)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return None
    return total / 1e9


class RssPeak:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start = self.peak = self.proc.memory_info().rss
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.1)  # the sampling period

    async def growth_mb(self) -> float:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return round((self.peak - self.start) / 2**20, 1)
