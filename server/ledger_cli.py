"""`giftwire flush`, `giftwire reconcile`, `giftwire rebuild`: the ledger's operations commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from server import config as config_mod
from server.config import Config
from server.logsetup import configure
from server.money.flusher import Flusher, ensure_groups
from server.money.wallet import Wallet
from server.runtime import open_runtime
from server.storage.runners import script_runner


def register(sub: Any) -> None:
    p = sub.add_parser("flush", help="run the ledger flusher alone (Redis streams -> Postgres)")
    p.set_defaults(func=_flush)
    p = sub.add_parser(
        "reconcile", help="compare Redis wallets with the ledger; exit 1 on any difference"
    )
    p.add_argument("--no-flush", action="store_true", help="compare without draining first")
    p.set_defaults(func=_reconcile)
    p = sub.add_parser(
        "rebuild", help="restore wallets, tx records and rooms into Redis from the ledger"
    )
    p.add_argument("--force", action="store_true", help="overwrite a Redis that has wallets")
    p.set_defaults(func=_rebuild)


def _config() -> Config:
    cfg = config_mod.from_env()
    configure(cfg.log_level, cfg.log_json)
    if cfg.embedded:
        raise config_mod.ConfigError("REDIS_URL and DATABASE_URL must be set for this command")
    return cfg


# `reconcile` and `rebuild` while Postgres is down (1 is "differences", 2 bad arguments).
EXIT_UNAVAILABLE = 3


class PostgresUnavailable(Exception):
    pass


@contextlib.asynccontextmanager
async def _parts(cfg: Config, *, need_postgres: bool = True
                 ) -> AsyncIterator[tuple[Any, Wallet, Flusher]]:
    """The runtime, wallet and a flusher. `reconcile` and `rebuild` read Postgres at once, so
    they stop if it is down; `flush` (need_postgres=False) waits for it, retrying."""
    async with open_runtime(cfg) as rt:
        if need_postgres and rt.migrations is not None and not rt.migrations.applied.is_set():
            raise PostgresUnavailable(rt.migrations.error or "migrations not applied")
        runner = script_runner(rt.redis)
        await runner.load()
        runner.start()
        try:
            wallet = Wallet(rt, runner)
            await ensure_groups(rt)
            yield rt, wallet, Flusher(rt, wallet)
        finally:
            await runner.stop()


def _flush(args: argparse.Namespace) -> int:
    cfg = _config()

    async def main() -> None:
        async with _parts(cfg, need_postgres=False) as (_rt, _wallet, flusher):
            task = asyncio.current_task()
            assert task is not None
            loop = asyncio.get_running_loop()
            def on_signal() -> None:
                flusher.request_stop()
                task.cancel()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal)
            print(f"flusher {flusher.name} running", file=sys.stderr, flush=True)
            try:
                await flusher.run()
            except asyncio.CancelledError:
                pass  # SIGTERM: the batch in hand was either committed or stays pending
            finally:
                await flusher.stop()

    asyncio.run(main())
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from server.money.reconcile import reconcile

    cfg = _config()

    async def main() -> int:
        async with _parts(cfg) as (rt, _wallet, flusher):
            try:
                diffs = await reconcile(rt, None if args.no_flush else flusher)
            finally:
                await flusher.stop()
        for d in diffs:
            print(d)
        print(f"{len(diffs)} difference(s)", file=sys.stderr)
        return 1 if diffs else 0

    return _unless_postgres_down("reconcile", main)


def _rebuild(args: argparse.Namespace) -> int:
    # Money first, rooms after: money knows nothing of rooms (server/hub/rebuild.py).
    from server.hub.rebuild import rebuild_rooms
    from server.money.reconcile import RebuildRefused, rebuild, redis_has_wallets

    cfg = _config()

    async def main() -> int:
        async with _parts(cfg) as (rt, wallet, flusher):
            try:
                if await redis_has_wallets(rt):
                    # What Redis accepted and the ledger does not hold yet would be overwritten.
                    await flusher.drain(claim_all=True)
                report = await rebuild(rt, wallet, force=args.force)
            except RebuildRefused as exc:
                print(f"giftwire rebuild: {exc}", file=sys.stderr)
                return 1
            finally:
                await flusher.stop()
            rooms = await rebuild_rooms(rt)
        print(f"rebuilt {report.wallets} wallet(s) and {report.records} record(s); "
              f"{rooms.rooms} room(s): {rooms.leaderboards} leaderboard(s), "
              f"{rooms.published} published tx id(s)")
        return 0

    return _unless_postgres_down("rebuild", main)


def _unless_postgres_down(command: str, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(main())
    except PostgresUnavailable as exc:
        print(f"giftwire {command}: Postgres is unavailable ({exc}); retry when it is back",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
