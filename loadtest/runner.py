"""One load-test run, start to end: services, servers, stage, workers, chaos, verification.

Every phase has a deadline. A server that dies when nothing meant to kill it ends the run at
once: workers are told to stop, what was recorded is verified anyway, and the report's `aborted`
says which server died, how, and the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from loadtest import chaos as chaos_mod
from loadtest import ledgercheck
from loadtest.cpu import CpuMeter
from loadtest.fleet import Fleet, FleetError
from loadtest.probe import final_seqs
from loadtest.profile import Profiler
from loadtest.provision import Stage, stage
from loadtest.results import WorkerResult
from loadtest.scenarios import Plan
from loadtest.spawn import ServerProcess, Services, listening_pids, server_config
from loadtest.verify import Verification, verify
from loadtest.worker import WorkerPlan
from server.auth import TokenIssuer
from server.config import Config
from server.runtime import redis_client
from server.storage.keys import Keys

TIMELINE_S = 0.5


@dataclass
class Target:
    """Where the servers are: spawned by us, or given with --url (then `servers` is empty)."""

    base_urls: list[str]
    config: Config
    services: Services | None
    servers: list[ServerProcess] = field(default_factory=list)
    flusher: ServerProcess | None = None

    @property
    def ws_urls(self) -> list[str]:
        return [u.replace("http://", "ws://") + "/ws" for u in self.base_urls]


@dataclass
class RunData:
    plan: Plan
    run_id: str
    started_at: float = 0.0
    t0: float = 0.0
    load_s: float = 0.0
    stage: Stage | None = None
    results: list[WorkerResult] = field(default_factory=list)
    finals: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, float]] = field(default_factory=list)
    cpu: dict[str, Any] = field(default_factory=dict)
    rss_kib_per_conn: float | None = None
    ledger: ledgercheck.LedgerCheck | None = None
    verification: Verification | None = None
    aborted: str | None = None
    chaos_events: list[dict[str, Any]] = field(default_factory=list)
    connect_errors: dict[str, int] = field(default_factory=dict)
    connected: int = 0
    reconnects: int = 0
    frames: int = 0  # WebSocket messages the members received
    state: int = 0  # room state messages (leaderboard, goal, viewers) the members received
    profile: dict[str, Any] = field(default_factory=dict)
    catch_up: dict[str, Any] = field(default_factory=dict)
    probe_errors: dict[str, str] = field(default_factory=dict)
    worker_failures: list[str] = field(default_factory=list)  # any fails the verdict
    rss_kib_start: float = 0.0  # all server processes, once every client had joined
    rss_kib_end: float = 0.0  # and when the load stopped (slow readers' backlogs would show)


def base_config(run_id: str, plan: Plan) -> Config:
    return Config(
        key_prefix=f"lt{run_id}:",
        db_schema=f"lt_{run_id}",
        jwt_secret="loadtest-" + secrets.token_hex(16),
        # The load test measures the server, not the per-connection flood guard.
        rate_per_s=1e9,
        rate_burst=10**9,
        # chaos runs the flusher as its own process, to kill it; ledger starts it after the load
        run_flusher=not (plan.chaos or plan.ledger_catchup),
        log_level="WARNING",
        drain_timeout_s=5.0,
        workers=plan.server_workers,
    )


def start_servers(plan: Plan, services: Services, cfg: Config) -> Target:
    target = Target([], cfg, services)
    for i in range(plan.spawn):
        scfg = server_config(cfg, services)
        proc = ServerProcess(scfg, services.workdir / f"server{i}.log")
        proc.start()
        target.servers.append(proc)
    if plan.chaos or plan.ledger_catchup:
        fcfg = dataclasses.replace(server_config(cfg, services), run_flusher=True)
        target.flusher = ServerProcess(fcfg, services.workdir / "flusher.log", argv=("flush",))
    for proc in target.servers:
        proc.wait_ready()
    if target.flusher is not None and not plan.ledger_catchup:
        target.flusher.start()
    target.base_urls = [p.base_url for p in target.servers]
    return target


def stop_servers(target: Target) -> None:
    procs = [*target.servers, *([target.flusher] if target.flusher else [])]
    for proc in procs:
        proc.expected_exit = True
        with contextlib.suppress(Exception):
            if proc.process is not None and proc.process.poll() is None:
                proc.process.terminate()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop()


def worker_plans(plan: Plan, target: Target, st: Stage) -> list[WorkerPlan]:
    rate = plan.rate
    if plan.deliveries_rate:
        members_per_room = len(st.conns) / plan.rooms
        rate = plan.deliveries_rate / members_per_room
    plans = []
    for w in range(plan.workers):
        conns = tuple(st.conns[w::plan.workers])
        senders = sum(c.sender for c in conns)
        total_senders = sum(c.sender for c in st.conns) or 1
        plans.append(WorkerPlan(
            index=w, urls=tuple(target.ws_urls), conns=conns, mix=st.mix,
            rate=rate * senders / total_senders, duration_s=plan.duration_s,
            warmup_s=plan.warmup_s, settle_s=plan.settle_s, reconnect=plan.chaos,
        ))
    return plans


def server_pids(target: Target) -> list[int]:
    """Spawned servers that are alive (a supervisor with its workers); with --url, whatever
    listens on the URLs' ports."""
    if target.servers:
        pids = [p.pid for p in target.servers if p.pid and p.exit_code() is None]
        for pid in list(pids):
            with contextlib.suppress(psutil.Error):
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        return pids
    ports = {urlsplit(u).port or 80 for u in target.base_urls}
    return [pid for port in ports for pid in listening_pids(port, children=False)]


def server_rss_kib(target: Target) -> list[float]:
    out = []
    for pid in server_pids(target):
        with contextlib.suppress(psutil.Error):
            out.append(psutil.Process(pid).memory_info().rss / 1024)
    return out


async def execute(
    plan: Plan, target: Target, run_id: str, on_tick: Callable[[RunData, dict[str, Any]], None],
    profile_dir: Path | None = None,
) -> RunData:
    data = RunData(plan, run_id, started_at=time.time())
    cfg = target.config
    issuer = TokenIssuer(cfg.jwt_secret, Keys(cfg.key_prefix, cfg.wallet_shards))
    keys = Keys(cfg.key_prefix, cfg.wallet_shards)
    cluster = target.services.cluster if target.services else None
    names = None
    if plan.kill_master_s and cluster is None:  # else the run would pass with nothing killed
        raise FleetError("--kill-master needs the load tester's own cluster (unset REDIS_URL)")
    if cluster is not None:  # rooms on different masters, whichever one a failover takes
        ranges = await asyncio.to_thread(cluster.slot_ranges)
        names = chaos_mod.place_rooms(run_id, plan.rooms, keys.room_seq, ranges)
    data.stage = st = await stage(target.base_urls[0], plan, run_id, issuer, names)
    totals: dict[int, dict[str, int]] = {}

    def on_progress(index: int, at: float, counters: dict[str, int]) -> None:
        totals[index] = counters

    fleet = Fleet(worker_plans(plan, target, st), on_progress)
    redis = redis_client(cfg.redis_url or "") if cfg.redis_url else None
    meter = CpuMeter({
        "server": lambda: server_pids(target),
        "flusher": lambda: [target.flusher.pid] if target.flusher and target.flusher.pid else [],
        "redis": target.services.redis_pids if target.services else list,
        "postgres": target.services.postgres_pids if target.services else list,
        "load_generator": lambda: [psutil.Process().pid, *fleet.pids],
    })
    max_lag = 0
    try:
        rss_before = server_rss_kib(target)
        fleet.start()
        ready = await fleet.gather("ready", 60 + plan.connections / 50)
        for msg in ready:
            data.connected += msg[1]["connected"]
            for k, n in msg[1]["errors"].items():
                data.connect_errors[k] = data.connect_errors.get(k, 0) + n
        rss_after = server_rss_kib(target)
        if rss_before and rss_after and data.connected:
            data.rss_kib_per_conn = round((sum(rss_after) - sum(rss_before)) / data.connected, 2)
        if data.connected == 0:
            raise FleetError(f"no connection could be opened: {data.connect_errors}")
        data.t0 = time.monotonic() + 0.3
        meter.start()
        fleet.send(("go", data.t0))
        profiler = Profiler(profile_dir) if profile_dir else None
        if profiler is not None:
            pids = {f"server{i}": p.pid for i, p in enumerate(target.servers) if p.pid}
            # Under --server-workers the supervisor idles: sample its workers.
            pids.update({f"server-worker{i}": pid for i, pid in enumerate(
                pid for pid in server_pids(target) if pid not in pids.values())})
            pids.update({f"worker{i}": pid for i, pid in enumerate(fleet.pids)})
            profiler.start(pids, plan.duration_s)
        chaos_task = None
        if plan.chaos:
            chaos_task = asyncio.create_task(chaos_mod.run(
                plan, target.flusher, target.servers[-1], data.t0, data.chaos_events))
        elif plan.kill_master_s and cluster is not None:
            chaos_task = asyncio.create_task(chaos_mod.kill_master(
                plan, cluster, st.rooms, keys.room_seq, data.t0, data.chaos_events))
        sent_task = asyncio.create_task(fleet.gather("sent", plan.duration_s + plan.settle_s + 60))
        last = [0.0, 0.0, 0.0]
        while not sent_task.done():
            await asyncio.wait({sent_task}, timeout=TIMELINE_S)
            meter.sample()
            dead = _unexpected_death(target)
            if dead:
                data.aborted = dead
                fleet.send(("stop",))
                break
            lag_now = None
            if redis is not None:
                with contextlib.suppress(Exception):
                    lag_now = await ledgercheck.flusher_lag(redis, keys)
                    max_lag = max(max_lag, lag_now)
            agg = {k: sum(t.get(k, 0) for t in totals.values())
                   for k in ("sent", "accepted", "rejected", "received", "closed", "behind")}
            point = {"t": round(time.monotonic() - data.t0, 3), **agg, "lag": lag_now}
            now = point["t"]
            dt = max(1e-9, now - last[0])
            point["accepted_per_s"] = round((agg["accepted"] - last[1]) / dt, 1)
            point["received_per_s"] = round((agg["received"] - last[2]) / dt, 1)
            last = [now, agg["accepted"], agg["received"]]
            data.timeline.append(point)
            on_tick(data, point)
        data.load_s = max(1e-9, min(time.monotonic() - data.t0, plan.duration_s))
        data.rss_kib_start, data.rss_kib_end = sum(rss_after), sum(server_rss_kib(target))
        meter.stop()
        data.cpu = meter.report()
        if profiler is not None:
            data.profile = await asyncio.to_thread(profiler.finish)
        if chaos_task is not None:
            await chaos_task
        if data.aborted is None:
            with contextlib.suppress(Exception):
                sent_task.result()
            probed = await final_seqs(target.ws_urls, st, timeout=10)
            data.finals = {r: v for r, v in probed.items() if isinstance(v, int)}
            data.probe_errors = {r: v for r, v in probed.items() if isinstance(v, str)}
            fleet.send(("final", data.finals))
        else:
            sent_task.cancel()
        data.results = await fleet.results(plan.settle_s + 60)
        for r in data.results:
            data.reconnects += r.reconnects
            data.frames += r.frames
            data.state += r.state
            data.worker_failures += [f"worker {r.index}: {f}" for f in r.failures]
            if r.aborted and data.aborted is None:
                data.aborted = f"worker {r.index}: {r.aborted}"
    except FleetError as exc:
        data.aborted = data.aborted or str(exc)
    finally:
        await fleet.stop()
    if plan.ledger_catchup and redis is not None and target.flusher is not None:
        data.catch_up = await _catch_up(target.flusher, redis, keys, plan.settle_s)
    if data.results:
        data.verification = verify(data.results, data.finals, st.prices, data.t0)
    if redis is not None and cfg.database_url and data.verification is not None:
        data.ledger = await _ledger(data, redis, keys, cfg, st, max_lag)
    if redis is not None:
        await redis.aclose()
    return data


async def _ledger(
    data: RunData, redis: Any, keys: Keys, cfg: Config, st: Stage, max_lag: int
) -> ledgercheck.LedgerCheck:
    v = data.verification
    assert v is not None
    timeout = data.plan.settle_s if _flusher_alive(data) else 2.0
    assert cfg.database_url is not None
    return await ledgercheck.check(
        redis, keys, cfg.database_url, cfg.db_schema, st.viewer_prefix, st.grants,
        v.coins_accepted, v.gifts_accepted, max_lag, timeout,
    )


async def _catch_up(
    flusher: ServerProcess, redis: Any, keys: Keys, timeout: float
) -> dict[str, Any]:
    """Start the flusher on the backlog the load left and time it to an empty stream. The rate
    counts from its first flushed batch, so process start-up is not charged to it."""
    backlog = await ledgercheck.flusher_lag(redis, keys)
    started = time.monotonic()
    flusher.start()
    first: tuple[float, int] | None = None
    lag = backlog
    deadline = started + timeout
    while lag > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # the flusher is another process: poll its visible effect
        lag = await ledgercheck.flusher_lag(redis, keys)
        if first is None and lag < backlog:
            first = (time.monotonic(), lag)
    done = time.monotonic()
    out: dict[str, Any] = {"backlog_entries": backlog, "left": lag,
                           "total_s": round(done - started, 3)}
    if first is not None and lag == 0 and done > first[0]:
        out["entries_per_s"] = round(first[1] / (done - first[0]), 1)
    return out


def _flusher_alive(data: RunData) -> bool:
    return data.aborted is None


def _unexpected_death(target: Target) -> str | None:
    for proc in [*target.servers, *([target.flusher] if target.flusher else [])]:
        code = proc.exit_code()
        if code is not None and not proc.expected_exit:
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            tail = proc.log_tail(800).strip().splitlines()[-5:]
            return (f"server process {proc.argv[0]} on port {proc.config.port} (pid {proc.pid}) "
                    f"{how} mid-run" + (f"; log: {' | '.join(tail)}" if tail else ""))
    return None
