"""Postgres: the connection pool and versioned migrations.

Migrations are `server/storage/migrations/NNNN_name.sql`, applied in order in one transaction and
recorded in `schema_migrations`. A transaction-level advisory lock serialises processes that start
together, so applying twice (or from two processes at once) is safe.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger("giftwire.db")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed 64-bit number: it names giftwire's migration lock among other applications' locks.
_LOCK_ID = 0x67696674_77697265 & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


# How long opening a connection may take: a Postgres behind a dead link must fail a request (503)
# or a migration attempt (retried) in seconds, not asyncpg's default minute.
CONNECT_TIMEOUT_S = 5.0
MIGRATE_BACKOFF_MAX_S = 5.0
# What "Postgres is unavailable" looks like to a caller: no connection (refused, reset, timed
# out), a connection lost, Postgres starting or stopping, or its tables not migrated yet.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError, asyncpg.UndefinedTableError,
)


class NotMigrated(ConnectionError):
    """Postgres has not been migrated yet (it was down since this process started)."""


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 0, max_size: int = 8
) -> asyncpg.Pool:
    """A pool that opens connections when first used (min_size 0 by default), so creating it
    never needs Postgres: the spend path does not, and the server must start without it."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"search_path": schema, "application_name": "giftwire"},
    )
    assert pool is not None
    return pool


async def migrate(dsn: str, schema: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    applied_now: list[int] = []
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET LOCAL search_path TO "{schema}"')
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for m in load_migrations(directory):
                if m.version in done:
                    continue
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version, m.name,
                )
                applied_now.append(m.version)
                log.info("applied migration %04d_%s to schema %s", m.version, m.name, schema)
    finally:
        await conn.close()
    return applied_now


async def drop_schema(dsn: str, schema: str) -> None:
    """Remove a schema and everything in it (a test's or a load run's); never the live one."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def migrations_current(pool: asyncpg.Pool, directory: Path = MIGRATIONS_DIR) -> bool:
    """True when every migration shipped with this code is applied (readiness)."""
    want = {m.version for m in load_migrations(directory)}
    try:
        rows = await pool.fetch("SELECT version FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return False
    return want <= {r["version"] for r in rows}


class Migrator:
    """Migrations applied at start-up if Postgres answers, else in the background, retried with
    capped backoff until it does. `applied` tells the ledger's writers when they may write."""

    def __init__(self, dsn: str, schema: str, *, applied: bool = False) -> None:
        self.dsn = dsn
        self.schema = schema
        self.applied = asyncio.Event()
        if applied:
            self.applied.set()
        self.error: str | None = None  # the last attempt's failure, for readiness and logs

    def check(self) -> None:
        if not self.applied.is_set():
            raise NotMigrated(f"migrations not applied yet: {self.error or 'pending'}")

    async def attempt(self) -> bool:
        try:
            await migrate(self.dsn, self.schema)
        except UNAVAILABLE as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        self.error = None
        self.applied.set()
        return True

    async def _attempt_or_log(self) -> bool:
        try:
            return await self.attempt()
        except Exception:  # not an outage (a migration's own error): loud, and not retried
            log.exception("migrations of schema %s failed; not retried", self.schema)
            raise

    async def run(self) -> None:
        """Until applied; log each failure (the first as the server starting degraded)."""
        delay = 0.1
        while not await self._attempt_or_log():
            log.warning("postgres unavailable (%s): migrations retried in %.1fs; spends go on, "
                        "the ledger waits in Redis", self.error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MIGRATE_BACKOFF_MAX_S)
        log.info("postgres available: migrations of schema %s applied", self.schema)
