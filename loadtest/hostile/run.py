"""One `hostile` run: a server of its own, the honest pair's baseline, then each attack while the
pair measures itself again. Per attack: the pair's p99 against its baseline, events lost, server
RSS growth, HTTP 5xx answers, tracebacks the server logged, and what the attack observed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from loadtest import spawn
from loadtest.hostile import placement
from loadtest.hostile.attacks import ATTACKS, Target, run_attack
from loadtest.hostile.machine import RssPeak, WindowCpu
from loadtest.hostile.pair import HonestPair
from loadtest.profile import Profiler
from loadtest.scenarios import Plan
from server.auth import TokenIssuer
from server.config import Config
from server.storage.keys import Keys

RSS_LIMIT_MB = 50.0
P99_LIMIT = 2.0  # the pair's p99 under attack, as a multiple of its own baseline
P99_FLOOR_MS = 5.0  # baselines below this are noise on a shared machine: compare with this
ROOM = "stage"
_SPAWN = multiprocessing.get_context("spawn")  # no fork of a process with a running loop


def hostile_config(run_id: str) -> Config:
    # The server's own defaults, as in production, except that loopback is not trusted: the
    # attacks come from 127.0.0.1 and must meet the per-address cap.
    return Config(key_prefix=f"lh{run_id}:", db_schema=f"lh_{run_id}",
                  jwt_secret="hostile-" + secrets.token_hex(16), log_level="INFO",
                  trusted_addresses="", drain_timeout_s=5.0)


async def _provision(base_url: str, issuer: TokenIssuer, run_id: str) -> dict[str, str]:
    users = {"sender": f"{run_id}s", "receiver": f"{run_id}r", "attacker": f"{run_id}a",
             "creator": f"{run_id}c"}
    tokens = {k: issuer.mint(u, "creator" if k == "creator" else "viewer")
              for k, u in users.items()}
    admin = issuer.mint(f"{run_id}admin", "admin")
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        resp = await http.post(f"/api/rooms/{ROOM}/live", json={"title": "hostile"},
                               headers={"authorization": f"Bearer {tokens['creator']}"})
        resp.raise_for_status()
        for who in ("sender", "attacker", "creator"):
            resp = await http.post("/api/admin/grant", json={
                "user": users[who], "coins": 1_000_000, "grant_id": f"{users[who]}-fund"},
                headers={"authorization": f"Bearer {admin}"})
            resp.raise_for_status()
    return tokens


def _judge(row: dict[str, Any], base: dict[str, Any]) -> list[str]:
    failed = []
    if row["rss_growth_mb"] >= RSS_LIMIT_MB:
        failed.append("rss")
    if row["http_5xx"]:
        failed.append("5xx")
    if row["tracebacks"]:
        failed.append("tracebacks")
    pair = row["pair"]
    if pair["lost"] or pair["events"] < pair["acked"]:
        failed.append("lost events")
    for key in ("ack_p99_ms", "event_p99_ms"):
        ratio = _ratio(pair, base, key)
        if ratio is None or ratio > P99_LIMIT:
            failed.append(key)
    seen = row["attack"]
    if "error" in seen:
        failed.append("attack error")
    if seen.get("still_open_at_end") or seen.get("duplicate_key_accepted") \
            or seen.get("self_gift_accepted"):
        failed.append("attack succeeded")
    if "close_code" in seen and seen["close_code"] != 4004:
        failed.append("revoked session not closed 4004")
    return failed


def quiet_reference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The baseline an attack window is judged against: per p99, the higher of the pair's two
    quiet windows of the same run (before the first attack and after the last). The pair's own
    p99 moves between quiet windows with the machine alone; the higher one is what the machine
    does to it without any attacker, so a window beyond 2x of it is the attack's doing, while a
    median of two (their mean) would charge half of that quiet spread to the attacker."""
    ref: dict[str, Any] = {"rule": "higher of the two quiet windows, per p99"}
    for key in ("ack_p99_ms", "event_p99_ms"):
        values = [w[key] for w in (before, after) if w.get(key) is not None]
        ref[key] = max(values) if values else None
    ref["lost"] = before["lost"] + after["lost"]
    ref["acked"] = before["acked"] + after["acked"]
    return ref


def p99_ratio(pair: dict[str, Any], ref: dict[str, Any]) -> dict[str, float | None]:
    """The pair's p99 under attack over the reference (floored at P99_FLOOR_MS)."""
    out: dict[str, float | None] = {}
    for name, key in (("ack", "ack_p99_ms"), ("event", "event_p99_ms")):
        ratio = _ratio(pair, ref, key)
        out[name] = None if ratio is None else round(ratio, 2)
    known = [v for v in out.values() if v is not None]
    out["max"] = max(known) if known else None
    return out


def _ratio(pair: dict[str, Any], ref: dict[str, Any], key: str) -> float | None:
    return None if pair[key] is None else pair[key] / max(ref[key] or 0.0, P99_FLOOR_MS)


async def run_hostile(plan: Plan, console: Console, profile_dir: Path | None = None,
                      only: list[str] | None = None, pin: bool = True) -> dict[str, Any]:
    """`only`: a subset of the attacks (for profiling one); `profile_dir`: py-spy samples of the
    server during each attack window, `<dir>/<attack>/server.folded`; `pin`: the attacker on
    cores of its own (loadtest/hostile/placement.py)."""
    place = placement.choose(pin)
    console.print(place.describe())
    with placement.server_side(place):
        return await _run(plan, console, place, profile_dir, only)


async def _run(plan: Plan, console: Console, place: placement.Placement,
               profile_dir: Path | None, only: list[str] | None) -> dict[str, Any]:
    names = [n for n in ATTACKS if not only or n in only]
    run_id = secrets.token_hex(3)
    rate = plan.rate
    with spawn.services(cluster=plan.redis_cluster) as services, contextlib.ExitStack() as stack:
        cfg = spawn.server_config(hostile_config(run_id), services)
        server = spawn.ServerProcess(cfg, services.workdir / "server.log")
        server.start()
        try:
            await asyncio.to_thread(server.wait_ready)
            assert server.pid is not None
            own_redis = services.embedded and "REDIS_URL" not in os.environ
            own_pg = services.embedded and "DATABASE_URL" not in os.environ
            redis_pids = services.redis_pids() if own_redis else []

            def embedded() -> dict[str, list[int]]:  # Postgres forks backends as it goes
                pids = {"redis": redis_pids} if own_redis else {}
                return {**pids, "postgres": services.postgres_pids()} if own_pg else pids

            theirs = "not ours (left unpinned)"
            observed: dict[str, Any] = {
                "server": placement.affinity([server.pid]),
                "pair": placement.affinity([os.getpid()]),
                "redis": placement.affinity(redis_pids) if own_redis else theirs,
                "postgres": placement.affinity(embedded()["postgres"]) if own_pg else theirs}
            sides = {"server_side": place.server_cpus,
                     "attacker_side": place.attacker_cpus} if place.pinned else {}
            server_pid = server.pid

            def window_cpu() -> WindowCpu:
                return WindowCpu(server_pid, embedded, sides)

            issuer = TokenIssuer(cfg.jwt_secret, Keys(cfg.key_prefix, cfg.wallet_shards))
            tokens = await _provision(server.base_url, issuer, run_id)
            target = Target(cfg.port, tokens["attacker"], tokens["creator"], ROOM)
            rows: list[dict[str, Any]] = []
            attackers = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=_SPAWN, initializer=placement.attacker_init,
                initargs=(place.attacker_cpus, place.attacker_nice))
            stack.callback(attackers.shutdown, cancel_futures=True)
            async with HonestPair(server.ws_url, tokens["sender"], tokens["receiver"],
                                  ROOM) as pair:
                # A first window right after start-up is not a quiet one: the server, Redis and
                # Postgres are still settling (BENCHMARKS.md, "Hostile edge, the attacker on its
                # own core": 35 ms before, 7 ms after). Reported, never judged against.
                cpu = window_cpu()
                warmup = {**await pair.measure(plan.duration_s, rate), **cpu.figures()}
                console.print(f"warm-up (not judged): {warmup}")
                cpu = window_cpu()
                before = {**await pair.measure(plan.duration_s, rate), **cpu.figures()}
                console.print(f"quiet, before the attacks: {before}")
                loop = asyncio.get_running_loop()
                for name in names:
                    log_at = server.log_path.stat().st_size
                    rss, cpu = RssPeak(server.pid), window_cpu()
                    profiler = Profiler(profile_dir / name) if profile_dir else None
                    if profiler is not None:
                        profiler.start({"server": server.pid}, plan.duration_s)
                    task = loop.run_in_executor(attackers, run_attack, name, target,
                                                plan.duration_s)
                    window = await pair.measure(plan.duration_s, rate)
                    used = cpu.figures()
                    seen = await asyncio.wait_for(task, 120)
                    profiled = await asyncio.to_thread(profiler.finish) if profiler else None
                    log = server.log_path.read_bytes()[log_at:].decode(errors="replace")
                    row = {"name": name, "attack": seen, "pair": window,
                           "rss_growth_mb": await rss.growth_mb(),
                           "http_5xx": int(seen.get("5xx", 0)),
                           "tracebacks": log.count("Traceback (most recent call last)"),
                           "server_alive": server.exit_code() is None, **used}
                    if profiled is not None:
                        row["profile"] = profiled
                    rows.append(row)
                    console.print(f"{name}: ack / event p99 {window['ack_p99_ms']} / "
                                  f"{window['event_p99_ms']} ms")
                cpu = window_cpu()
                after = {**await pair.measure(plan.duration_s, rate), **cpu.figures()}
                console.print(f"quiet, after the attacks: {after}")
        finally:
            server.stop()
            if not services.embedded:
                await spawn.drop_run_data(cfg)
    ref = quiet_reference(before, after)
    for row in rows:
        row["p99_ratio"] = p99_ratio(row["pair"], ref)
        row["failed"] = _judge(row, ref) + ([] if row["server_alive"] else ["died"])
    out = {"scenario": "hostile", "ok": all(not r["failed"] for r in rows),
           "seconds_per_attack": plan.duration_s, "pair_rate_per_s": rate,
           "placement": placement.report(place, observed), "baseline": ref,
           "warmup": warmup, "baseline_before": before, "baseline_after": after,
           "attacks": rows}
    print_table(out, console)
    return out


def print_table(out: dict[str, Any], console: Console) -> None:
    table = Table(title="hostile: the honest pair under each attack",
                  caption=out["placement"]["text"])
    for col in ("attack", "ack p99 ms", "event p99 ms", "ratio", "lost", "RSS +MB", "5xx",
                "tracebacks", "server CPU s", "runq wait s", "steal s", "load", "verdict"):
        table.add_column(col)
    for label, key in (("(warm-up, not judged)", "warmup"), ("(quiet, before)", "baseline_before"),
                       ("(quiet, after)", "baseline_after")):
        base = out[key]
        table.add_row(label, str(base["ack_p99_ms"]), str(base["event_p99_ms"]), "",
                      str(base["lost"]), "", "", "", str(base.get("server_cpu_s", "")),
                      str(base.get("server_runq_wait_s", "")),
                      str(base.get("server_side_steal_s", "")), str(base.get("load1", "")), "")
    for r in out["attacks"]:
        p = r["pair"]
        table.add_row(r["name"], str(p["ack_p99_ms"]), str(p["event_p99_ms"]),
                      f"{r['p99_ratio']['max']}x", str(p["lost"]),
                      str(r["rss_growth_mb"]), str(r["http_5xx"]), str(r["tracebacks"]),
                      str(r.get("server_cpu_s", "")), str(r.get("server_runq_wait_s", "")),
                      str(r.get("server_side_steal_s", "")), str(r.get("load1", "")),
                      "OK" if not r["failed"] else ", ".join(r["failed"]))
    console.print(table)
    ref = out["baseline"]
    console.print(f"reference: ack / event p99 {ref['ack_p99_ms']} / {ref['event_p99_ms']} ms "
                  f"({ref['rule']}; floor {P99_FLOOR_MS} ms, limit {P99_LIMIT}x)")
    console.print(f"verdict: {'OK' if out['ok'] else 'FAILED'}")
