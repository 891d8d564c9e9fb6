"""Where a hostile run's processes run. An attacker on the internet spends its own machine's CPU,
not the server's: on a machine of at least 2 cores the attacker's process gets cores of its own
and the server, its embedded Redis and Postgres and the honest pair get the rest (Linux CPU
affinity), so the pair measures what the attack costs the server, not what the attacker's client
costs the machine. BENCHMARKS.md ("Hostile edge, the attacker on its own core") says why this is
the fair model and what it does not model. `--no-pin` turns it off."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Without cores of its own the attacker runs at a lower priority, so that its client-side work
# (parsing, reconnect loops) does not take the server's core as no network attacker could; with
# cores of its own it runs at full strength (BENCHMARKS.md, "Hostile edge, 240 gifts a window").
UNPINNED_ATTACKER_NICE = 10


@dataclass(frozen=True)
class Placement:
    pinned: bool
    server_cpus: tuple[int, ...]  # the server, embedded Redis/Postgres, the harness and the pair
    attacker_cpus: tuple[int, ...]
    reason: str = ""  # why not pinned

    @property
    def attacker_nice(self) -> int:
        return 0 if self.pinned else UNPINNED_ATTACKER_NICE

    def describe(self) -> str:
        if not self.pinned:
            return (f"placement: not pinned ({self.reason}); attacker at nice "
                    f"{self.attacker_nice}, sharing every core")
        return (f"placement: server, its embedded Redis/Postgres and the pair on CPU "
                f"{_cpus(self.server_cpus)}; attacker on CPU {_cpus(self.attacker_cpus)} "
                f"(nice {self.attacker_nice})")


def _cpus(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in cpus)


def split_cpus(cpus: Collection[int]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(server side, attacker side): the attacker gets the upper half (at least one core), the
    server side the rest; None with fewer than 2 cores (nothing to split)."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return None
    k = max(1, len(ordered) // 2)
    return tuple(ordered[:-k]), tuple(ordered[-k:])


def choose(enabled: bool) -> Placement:
    if not enabled:
        return Placement(False, (), (), "--no-pin")
    if not hasattr(os, "sched_setaffinity"):
        return Placement(False, (), (), "no CPU affinity on this platform")
    cpus = os.sched_getaffinity(0)
    split = split_cpus(cpus)
    if split is None:
        return Placement(False, (), (), f"{len(cpus)} core available: nothing to split")
    return Placement(True, *split)


def pin(pid: int, cpus: Collection[int]) -> None:
    """Every thread of `pid` (sched_setaffinity on a pid moves only its main thread)."""
    tasks = Path(f"/proc/{pid}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def server_side(placement: Placement) -> Iterator[None]:
    """The harness's own threads (the pair runs in it) on the server side's cores for the run:
    everything it starts afterwards (embedded Redis and Postgres, the server, py-spy) inherits
    them. The attacker's process moves itself (`attacker_init`). Restored on the way out."""
    if not placement.pinned:
        yield
        return
    before = os.sched_getaffinity(0)
    pin(os.getpid(), placement.server_cpus)
    try:
        yield
    finally:
        pin(os.getpid(), before)


def attacker_init(cpus: tuple[int, ...], nice: int) -> None:
    """Initializer of the attacker's process (it has one thread when it runs)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        os.nice(nice)


def affinity(pids: Iterable[int]) -> list[int] | None:
    """The cores the kernel lets these processes run on (union), None if none is readable."""
    seen: set[int] = set()
    found = False
    for pid in pids:
        with contextlib.suppress(OSError):
            seen |= os.sched_getaffinity(pid)
            found = True
    return sorted(seen) if found else None


def report(placement: Placement, observed: dict[str, Any]) -> dict[str, Any]:
    return {"pinned": placement.pinned, "reason": placement.reason,
            "server_side_cpus": list(placement.server_cpus),
            "attacker_cpus": list(placement.attacker_cpus),
            "attacker_nice": placement.attacker_nice, "observed": observed,
            "text": placement.describe()}
