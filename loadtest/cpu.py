"""CPU accounting per group of processes (servers, Redis, Postgres, load generator).

CPU seconds are read with psutil at every `sample()`; a process that dies mid-run (chaos) keeps the
last reading it had, and a process that starts mid-run counts from zero. Shares are in cores: 1.0
is one core busy for the whole window, so on a 2-core machine the groups add up to at most 2.0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

# A worker at or above this share of one core is saturated: the load generator is the limit.
SATURATED_CORE_SHARE = 0.9
# The machine counts as saturated a little below 100%: the scheduler never fills every gap.
MACHINE_SATURATED = 0.85
FIND_EVERY_S = 3.0


@dataclass
class _Proc:
    proc: psutil.Process
    base: float  # cpu seconds at the start of the window (0 for processes born after it)
    last: float


@dataclass
class CpuMeter:
    groups: dict[str, Callable[[], list[int]]]
    started: float = 0.0
    ended: float = 0.0
    _procs: dict[str, dict[int, _Proc]] = field(default_factory=dict)
    machine_start: float = 0.0
    machine_end: float = 0.0
    _found_at: float = 0.0
    softirq_start: float = 0.0
    softirq_end: float = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.machine_start = _machine_busy()
        self.softirq_start = _softirq()
        for name in self.groups:
            self._procs[name] = {}
        self.sample(first=True)

    def sample(self, *, first: bool = False) -> None:
        # Finding pids can be costly (listening sockets are found by scanning /proc); new
        # processes are looked for every FIND_EVERY_S, known ones are read at every sample.
        now = time.monotonic()
        refresh = first or now - self._found_at >= FIND_EVERY_S
        if refresh:
            self._found_at = now
        for name, finder in self.groups.items():
            known = self._procs[name]
            for pid in (finder() if refresh else list(known)):
                entry = known.get(pid)
                try:
                    if entry is None:
                        proc = psutil.Process(pid)
                        cpu = cpu_seconds(proc)
                        known[pid] = _Proc(proc, cpu if first else 0.0, cpu)
                    else:
                        entry.last = cpu_seconds(entry.proc)
                except psutil.Error:
                    continue

    def stop(self) -> None:
        self.sample()
        self.ended = time.monotonic()
        self.machine_end = _machine_busy()
        self.softirq_end = _softirq()

    def report(self) -> dict[str, Any]:
        wall = max(1e-9, self.ended - self.started)
        cores = psutil.cpu_count() or 1
        groups: dict[str, dict[str, float]] = {}
        for name, procs in self._procs.items():
            seconds = sum(max(0.0, p.last - p.base) for p in procs.values())
            per_proc = [max(0.0, p.last - p.base) / wall for p in procs.values()]
            groups[name] = {
                "cpu_s": round(seconds, 3),
                "cores": round(seconds / wall, 3),
                "share_of_machine": round(seconds / wall / cores, 3),
                "max_process_cores": round(max(per_proc, default=0.0), 3),
                "processes": len(procs),
            }
        machine = (self.machine_end - self.machine_start) / wall / cores
        # Whatever else ran on the machine meanwhile (other jobs, softirq network work).
        ours = sum(g["cores"] for g in groups.values())
        groups["other"] = {"cpu_s": round(max(0.0, machine * cores - ours) * wall, 3),
                           "cores": round(max(0.0, machine * cores - ours), 3),
                           "share_of_machine": round(max(0.0, machine - ours / cores), 3),
                           "max_process_cores": 0.0, "processes": 0}
        return {"wall_s": round(wall, 3), "machine_cores": cores,
                "machine_busy": round(machine, 3),
                # Loopback TCP receive work done in softirq context, charged to no process.
                "softirq_cores": round((self.softirq_end - self.softirq_start) / wall, 3),
                "groups": groups}


def cpu_seconds(proc: psutil.Process) -> float:
    """A process's user + system seconds so far."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def busy_seconds(t: Any) -> float:
    """Busy seconds of a `psutil.cpu_times()` reading (the machine's, or one core's)."""
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0))


def _softirq() -> float:
    return float(getattr(psutil.cpu_times(), "softirq", 0.0))


def _machine_busy() -> float:
    return busy_seconds(psutil.cpu_times())


def limit_verdict(cpu: dict[str, Any], generator_group: str = "load_generator") -> str:
    """Who held the figure back, in one sentence the report prints as is."""
    groups: dict[str, dict[str, float]] = cpu["groups"]
    gen = groups.get(generator_group, {})
    machine_busy = float(cpu["machine_busy"])
    worker_max = float(gen.get("max_process_cores", 0.0))
    server_max = float(groups.get("server", {}).get("max_process_cores", 0.0))
    if worker_max >= SATURATED_CORE_SHARE:
        return (f"load generator: one of its processes used {worker_max:.0%} of a core; "
                "the server may have had more to give")
    if server_max >= SATURATED_CORE_SHARE:
        return f"server: a server process used {server_max:.0%} of its one core"
    if machine_busy >= MACHINE_SATURATED:
        ranked = sorted(((g.get("cores", 0.0), k) for k, g in groups.items()), reverse=True)
        shares = ", ".join(f"{k} {c:.2f}" for c, k in ranked if c >= 0.05)
        verdict = f"machine: all cores busy ({machine_busy:.0%}; cores used: {shares})"
        if ranked and ranked[0][1] == generator_group:
            verdict += "; the load generator used the most: it, not the server, is the limit"
        return verdict
    return f"not CPU-bound (machine {machine_busy:.0%} busy): latency or the target rate set it"


def own_pids() -> list[int]:
    return [os.getpid()]
