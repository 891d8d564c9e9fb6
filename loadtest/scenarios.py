"""Scenario presets and the run plan they turn into once the command line overrides them.

A scenario is a set of defaults; every field of `Plan` that the command line names wins over it.
`validate` refuses plans that cannot produce a meaningful figure before anything is started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Rooms per connection is one: a simulated viewer watches one stream, as real viewers do.
MAX_CONNECTIONS = 20_000  # ulimit and 24 GiB: beyond this the machine, not giftwire, fails first
MAX_DURATION_S = 600.0
MAX_RATE = 1_000_000.0
MAX_WORKERS = 16


class PlanError(ValueError):
    """A command-line choice the harness refuses, with the reason in plain words."""


@dataclass(frozen=True, slots=True)
class Plan:
    scenario: str
    duration_s: float
    rooms: int
    connections: int  # in all rooms together, overlays included
    senders: int  # connections (of `connections`) that also send gifts
    rate: float  # target accepted gifts per second in all rooms; 0 = as fast as acks return
    deliveries_rate: float = 0.0  # when set: derive `rate` so deliveries/s match it
    overlays_per_room: int = 1
    slow_fraction: float = 0.0  # share of viewers that stop reading after the warm-up
    spawn: int = 1  # server processes to start; 0 = use --url
    server_workers: int = 1  # worker processes of each spawned server (GIFTWIRE_WORKERS)
    workers: int = 2  # load-generator processes
    chaos: bool = False
    ledger_catchup: bool = False  # flusher off during the load, then timed while it catches up
    combo_share: float = 0.15  # share of sends that are streak clicks
    big_share: float = 0.01  # share of sends that are big gifts
    warmup_s: float = 1.0
    settle_s: float = 10.0  # the most the end waits for in-flight deliveries and the flusher
    redis_cluster: bool = False  # on a Redis Cluster (a local 3+3 one unless REDIS_URL names one)
    kill_master_s: float = 0.0  # > 0: SIGKILL a master of the local cluster this far into the load

    @property
    def viewers(self) -> int:
        return self.connections - self.rooms * self.overlays_per_room


SCENARIOS: dict[str, Plan] = {
    "smoke": Plan("smoke", duration_s=3, rooms=2, connections=40, senders=8, rate=200,
                  workers=1, warmup_s=0.5, settle_s=10),
    # Many small rooms: each gift fans out to 5 members, so the money path, not fan-out, is
    # what saturates.
    "spend": Plan("spend", duration_s=15, rooms=100, connections=500, senders=500, rate=0,
                  overlays_per_room=0, combo_share=0.0, big_share=0.0),
    "fanout": Plan("fanout", duration_s=20, rooms=5, connections=5_000, senders=50, rate=0,
                   deliveries_rate=50_000),
    "fanout-max": Plan("fanout-max", duration_s=20, rooms=5, connections=5_000, senders=200,
                       rate=0),
    "bigroom": Plan("bigroom", duration_s=20, rooms=1, connections=5_000, senders=20, rate=20),
    # The slow tenth stops reading after 8 s: the readers' latency before and after is compared,
    # and the run is long enough for a stalled reader to overflow its server-side bound.
    "slow": Plan("slow", duration_s=40, rooms=5, connections=1_000, senders=100, rate=400,
                 slow_fraction=0.10, warmup_s=8.0),
    # The spend load with the flusher stopped; then the flusher starts and its catch-up rate is
    # compared with raw COPY into the same table.
    "ledger": Plan("ledger", duration_s=10, rooms=100, connections=500, senders=500, rate=0,
                   overlays_per_room=0, combo_share=0.0, big_share=0.0, ledger_catchup=True,
                   settle_s=120),
    # Each attack of issue 10 for `duration_s` while an honest pair gifts at `rate` and measures
    # itself against its own baseline (loadtest/hostile/). 240 gifts a window, baseline and
    # attacks alike, so a p99 is the 238th of 240 rather than the maximum of 80 (BENCHMARKS.md);
    # 15/s stays under the server's per-user gift budget (20/s).
    "hostile": Plan("hostile", duration_s=16, rooms=1, connections=2, senders=1, rate=15,
                    overlays_per_room=0, workers=1),
    # fanout-max at 2,000 connections, run twice in one invocation: a server of one worker,
    # then of two (`giftwire serve --workers 2`); loadtest/scaleout.py compares the two.
    "scale-out": Plan("scale-out", duration_s=15, rooms=5, connections=2_000, senders=200,
                      rate=0),
    # Two rooms in a timed battle, senders into both on two servers, one SIGKILLed mid-battle;
    # the final scores are checked against the ledger (loadtest/battle/).
    "battle": Plan("battle", duration_s=8, rooms=2, connections=8, senders=8, rate=80, spawn=2,
                   overlays_per_room=0, workers=1),
    "chaos": Plan("chaos", duration_s=20, rooms=4, connections=400, senders=60, rate=300,
                  spawn=2, chaos=True, settle_s=30),
}


def build_plan(scenario: str, **overrides: Any) -> Plan:
    """The scenario's plan with every non-None override applied, validated."""
    if scenario not in SCENARIOS:
        raise PlanError(
            f"unknown scenario {scenario!r}: choose one of {', '.join(sorted(SCENARIOS))}"
        )
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    plan = dataclasses.replace(SCENARIOS[scenario], **changes)
    if "rate" in changes and "deliveries_rate" not in changes:
        plan = dataclasses.replace(plan, deliveries_rate=0.0)
    validate(plan)
    return plan


def validate(p: Plan) -> None:
    if p.kill_master_s and not p.redis_cluster:
        raise PlanError("--kill-master needs --redis-cluster (it kills a master of the cluster)")
    if p.kill_master_s and p.rooms < 2:
        # One room is all on the killed master: every member told `gap`, nothing left to prove.
        raise PlanError("--kill-master needs at least 2 rooms (some on the killed master)")
    if p.kill_master_s and not 0 < p.kill_master_s < p.duration_s:
        raise PlanError(f"--kill-master must be within the run's {p.duration_s:g} s")
    if not 0 < p.duration_s <= MAX_DURATION_S:
        raise PlanError(
            f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {p.duration_s:g}"
        )
    if p.rooms < 1:
        raise PlanError(f"--rooms must be at least 1, got {p.rooms}")
    if not 1 <= p.connections <= MAX_CONNECTIONS:
        raise PlanError(f"--connections must be in [1, {MAX_CONNECTIONS}], got {p.connections}")
    if p.viewers < p.rooms:
        raise PlanError(
            f"--connections {p.connections} leaves fewer than one viewer per room "
            f"({p.rooms} rooms, {p.overlays_per_room} overlay(s) each)"
        )
    if not 0 <= p.senders <= p.viewers:
        raise PlanError(f"--senders must be in [0, {p.viewers}] (the viewers), got {p.senders}")
    if p.senders < p.rooms and p.senders != 0:
        raise PlanError(f"--senders {p.senders} is fewer than the {p.rooms} rooms")
    if not 0 <= p.rate <= MAX_RATE or not 0 <= p.deliveries_rate <= MAX_RATE * 100:
        raise PlanError(f"--rate must be in [0, {MAX_RATE:g}] gifts/s, got {p.rate:g}")
    if (p.rate or p.deliveries_rate) and p.senders == 0:
        raise PlanError("a gift rate needs at least one sender (--senders)")
    if not 0 <= p.slow_fraction < 1:
        raise PlanError(f"--slow-fraction must be in [0, 1), got {p.slow_fraction:g}")
    if not 0 <= p.spawn <= 4:
        raise PlanError(f"--spawn must be in [0, 4] server processes, got {p.spawn}")
    if not 1 <= p.server_workers <= 4:
        raise PlanError(f"--server-workers must be in [1, 4], got {p.server_workers}")
    if p.chaos and p.spawn < 2:
        raise PlanError("the chaos scenario kills one of two servers: it needs --spawn 2")
    if not 1 <= p.workers <= MAX_WORKERS:
        raise PlanError(f"--workers must be in [1, {MAX_WORKERS}], got {p.workers}")
    if p.workers > p.connections:
        raise PlanError(f"--workers {p.workers} exceeds --connections {p.connections}")
