"""`giftwire` / `python -m server`: serve, migrate, token, and the ledger commands."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from server import config as config_mod
from server.logsetup import configure


def _serve(args: argparse.Namespace) -> int:
    from server.supervisor.run import serve

    cfg = config_mod.from_env()
    overrides = {"port": args.port, "host": args.host, "demo": True if args.demo else None,
                 "workers": args.workers}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    config_mod.validate(cfg)
    config_mod.check_deployment(cfg)  # before any service starts: one line and exit 2
    configure(cfg.log_level, cfg.log_json)
    return serve(cfg)


def _migrate(args: argparse.Namespace) -> int:
    from server.serve import resolved
    from server.storage import db

    cfg = config_mod.from_env()
    configure(cfg.log_level, cfg.log_json)
    with resolved(cfg) as full:
        assert full.database_url is not None
        applied = asyncio.run(db.migrate(full.database_url, full.db_schema))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "up to date")
    return 0


def _token(args: argparse.Namespace) -> int:
    from server.auth import TokenIssuer
    from server.storage.keys import Keys

    cfg = config_mod.from_env()
    issuer = TokenIssuer(cfg.jwt_secret, Keys(cfg.key_prefix, cfg.wallet_shards), cfg.token_ttl_s)
    try:
        print(issuer.mint(args.user, args.role, name=args.name, room=args.room, ttl_s=args.ttl))
    except ValueError as exc:
        print(f"giftwire token: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="giftwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (embedded Redis/Postgres when URLs are unset)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int,
                   help="server processes on the one port (default GIFTWIRE_WORKERS; 0: automatic)")
    p.add_argument("--demo", action="store_true", help="seed a demo room and run gift bots")
    p.set_defaults(func=_serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("token", help="mint a development token")
    p.add_argument("user")
    p.add_argument("--role", default="viewer", choices=["viewer", "creator", "overlay", "admin"])
    p.add_argument("--name")
    p.add_argument("--room", help="the room an overlay token may read")
    p.add_argument("--ttl", type=int, help="lifetime in seconds")
    p.set_defaults(func=_token)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands contributed by other modules (ledger: flush, reconcile, rebuild)."""
    from server import ledger_cli

    return [ledger_cli.register]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except config_mod.ConfigError as exc:
        print(f"giftwire: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
