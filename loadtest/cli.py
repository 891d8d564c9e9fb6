"""`python -m loadtest run --scenario NAME` / `giftwire-loadtest`: run a scenario, report it.

Exit status: 0 the promises held (no loss, no duplicate, no reordering, ledger consistent),
1 they did not, 2 the arguments were refused, 3 the run was aborted (a server died, nothing
connected, a worker failed).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.scenarios import SCENARIOS, Plan, PlanError, build_plan
from server.config import is_cluster_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        print(f"giftwire-loadtest: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="giftwire-loadtest", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run one scenario and report it")
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    where = p.add_mutually_exclusive_group()
    where.add_argument("--spawn", type=_int, metavar="N",
                       help="start N server processes (default: the scenario's; embedded "
                            "Redis/Postgres unless REDIS_URL/DATABASE_URL are set)")
    where.add_argument("--url", help="test a running server (http://127.0.0.1:PORT); needs "
                                     "GIFTWIRE_JWT_SECRET, and REDIS_URL/DATABASE_URL for the "
                                     "ledger check")
    p.add_argument("--duration", type=_positive_float, metavar="S", dest="duration_s")
    p.add_argument("--rate", type=_positive_float, help="target gifts/s in all rooms (0: as fast "
                                                         "as acks return)")
    p.add_argument("--deliveries-rate", type=_positive_float, dest="deliveries_rate",
                   help="target deliveries/s (sets the gift rate from the room sizes)")
    p.add_argument("--rooms", type=_int)
    p.add_argument("--connections", type=_int, help="connections in all rooms together")
    p.add_argument("--senders", type=_int, help="viewers that also send gifts")
    p.add_argument("--slow-fraction", type=_positive_float, dest="slow_fraction")
    p.add_argument("--workers", type=_int, help="load-generator processes")
    p.add_argument("--server-workers", type=_int, dest="server_workers",
                   help="worker processes per spawned server (giftwire serve --workers N)")
    p.add_argument("--redis-cluster", action="store_true", dest="redis_cluster",
                   help="run on a Redis Cluster: REDIS_URL's when it is a redis+cluster:// URL, "
                        "else a local one of 3 masters + 3 replicas (needs redis-server >= 7.0)")
    p.add_argument("--kill-master", type=_positive_float, metavar="S", dest="kill_master_s",
                   help="with --redis-cluster (local): SIGKILL the master serving the first "
                        "room S seconds into the load; its replica takes over")
    p.add_argument("--baselines", action="store_true",
                   help="also measure the raw evalsha and websockets.broadcast baselines")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    p.add_argument("--html", type=Path, metavar="PATH", help="write plots as one HTML file")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="sample servers and workers with py-spy during the load phase")
    p.add_argument("--attack", action="append", dest="attacks", metavar="NAME",
                   help="hostile only: run just this attack (repeatable; default: all)")
    p.add_argument("--no-pin", action="store_false", dest="pin",
                   help="hostile only: do not give the attacker cores of its own (see "
                        "loadtest/hostile/placement.py)")
    return parser


def plan_from(args: argparse.Namespace) -> Plan:
    spawn = 0 if args.url else args.spawn
    plan = build_plan(
        args.scenario, duration_s=args.duration_s, rate=args.rate,
        deliveries_rate=args.deliveries_rate, rooms=args.rooms, connections=args.connections,
        senders=args.senders, slow_fraction=args.slow_fraction, workers=args.workers,
        spawn=spawn, server_workers=args.server_workers,
        redis_cluster=args.redis_cluster or None, kill_master_s=args.kill_master_s,
    )
    if args.url:
        if not args.url.startswith(("http://127.", "http://localhost")):
            raise PlanError("--url must be http://127.0.0.1:PORT (load only goes to this machine)")
        if not os.environ.get("GIFTWIRE_JWT_SECRET"):
            raise PlanError("--url needs GIFTWIRE_JWT_SECRET: the harness mints its own tokens")
        if plan.chaos:
            raise PlanError("the chaos scenario kills servers: it needs --spawn, not --url")
        if plan.kill_master_s:
            raise PlanError("--kill-master kills a master of the local cluster: it needs --spawn")
        if plan.redis_cluster and not is_cluster_url(os.environ.get("REDIS_URL")):
            raise PlanError("--redis-cluster with --url needs REDIS_URL=redis+cluster://...")
        if plan.scenario == "scale-out":
            raise PlanError("the scale-out scenario starts its servers twice: it needs --spawn")
        if plan.scenario == "battle":
            raise PlanError("the battle scenario kills one of its two servers: it needs --spawn")
        if plan.scenario == "hostile":
            raise PlanError("the hostile scenario watches its server's memory and log: it "
                            "needs --spawn, not --url")
    if not args.pin and plan.scenario != "hostile":
        raise PlanError("--no-pin is for the hostile scenario")
    if args.attacks:
        from loadtest.hostile.attacks import ATTACKS

        if plan.scenario != "hostile":
            raise PlanError("--attack is for the hostile scenario")
        if unknown := sorted(set(args.attacks) - set(ATTACKS)):
            raise PlanError(f"unknown attack(s) {unknown}; known: {sorted(ATTACKS)}")
    if args.profile is not None:
        from loadtest.profile import py_spy

        if py_spy() is None:
            raise PlanError("--profile needs py-spy (pip install py-spy)")
    for path in (args.json, args.html, args.profile):
        if path is not None and not path.parent.is_dir():
            raise PlanError(f"{path.parent} is not a directory")
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = plan_from(args)
    except PlanError as exc:
        print(f"giftwire-loadtest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    console = Console(stderr=False, highlight=False)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so spawned servers and embedded
    # Redis/Postgres are stopped by the same `finally` blocks instead of being orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        out = asyncio.run(_run(plan, args, console))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_setup_failure(exc):
            raise
        print(f"giftwire-loadtest: aborted: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    if out is None:
        return EXIT_ABORTED
    if out.get("aborted"):
        return EXIT_ABORTED
    return EXIT_OK if out["ok"] else EXIT_FAILED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _is_setup_failure(exc: BaseException) -> bool:
    from loadtest.provision import ProvisionError
    from loadtest.spawn import ServerDied
    from server.config import ConfigError
    from server.storage.embedded import EmbeddedUnavailable

    return isinstance(exc, ServerDied | ProvisionError | EmbeddedUnavailable | ConfigError
                      | TimeoutError | ConnectionError)


@contextlib.contextmanager
def _target(
    plan: Plan, args: argparse.Namespace, run_id: str, baselines: dict[str, Any], console: Console
) -> Iterator[Any]:
    from loadtest import runner, spawn
    from server.config import from_env

    if args.url:
        cfg = from_env()
        if args.baselines:
            baselines.update(_baselines(plan, cfg.redis_url, cfg.database_url, console))
        yield runner.Target([args.url.rstrip("/")], cfg, None)
        return
    with spawn.services(cluster=plan.redis_cluster) as services:
        if args.baselines:
            baselines.update(_baselines(plan, services.redis_url, services.database_url, console))
        cfg = runner.base_config(run_id, plan)
        cfg = dataclasses.replace(cfg, redis_url=services.redis_url,
                                  database_url=services.database_url)
        target = runner.Target([], cfg, services)
        try:
            target = runner.start_servers(plan, services, cfg)
            yield target
        finally:
            runner.stop_servers(target)
            if not services.embedded:
                # Called from inside the running loop: the clean-up gets a loop of its own.
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    pool.submit(asyncio.run, spawn.drop_run_data(cfg)).result(timeout=120)


async def _run(plan: Plan, args: argparse.Namespace, console: Console) -> dict[str, Any] | None:
    from loadtest import report

    if plan.scenario == "hostile":
        from loadtest.hostile.run import run_hostile

        out = await run_hostile(plan, console, args.profile, args.attacks, args.pin)
        if args.json:
            report.write_json(out, args.json)
        return out
    if plan.scenario == "battle":
        from loadtest.battle.run import run_battle

        out = await run_battle(plan, console)
        if args.json:
            report.write_json(out, args.json)
        return out
    if plan.scenario == "scale-out":
        from loadtest.scaleout import compare

        out = await compare(plan, lambda phase: _run_once(phase, args, console), console)
        if args.json:
            report.write_json(out, args.json)
        return out
    return await _run_once(plan, args, console)


async def _run_once(plan: Plan, args: argparse.Namespace, console: Console
                    ) -> dict[str, Any] | None:
    from loadtest import report
    from loadtest.live import Progress

    run_id = secrets.token_hex(4)
    baselines: dict[str, Any] = {}
    progress = Progress(plan, console, enabled=not args.quiet)
    # Starting servers and measuring baselines block; that happens before any load, so blocking
    # the loop here costs nothing measurable.
    with _target(plan, args, run_id, baselines, console) as target:
        from loadtest import runner

        console.print(f"[bold]running[/bold] {plan.scenario}: {plan.connections} connections, "
                      f"{plan.rooms} rooms, {len(target.base_urls)} server(s), run {run_id}")
        with progress:
            data = await runner.execute(plan, target, run_id, progress.tick, args.profile)
    out = report.build(data, baselines, len(target.base_urls))
    out["server_workers"] = plan.server_workers
    report.print_table(out, console)
    if args.json and plan.scenario != "scale-out":
        report.write_json(out, args.json)
    if args.html:
        from loadtest.html import write_html

        write_html(out, data, args.html)
    return out


def _baselines(
    plan: Plan, redis_url: str | None, database_url: str | None, console: Console
) -> dict[str, Any]:
    from loadtest.baselines import measure

    console.print("[bold]baselines[/bold]: raw evalsha of spend.lua, raw COPY into ledger_tx, "
                  "raw websockets.broadcast ...")
    return measure(plan, redis_url, database_url)
