"""The process's shared parts: clients, config, metrics, and the components built on them.

Built once by the app's lifespan (or by a CLI command) and passed to what needs it, so nothing
reaches for globals and tests can run several apps side by side in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode

from server.auth import TokenIssuer
from server.config import (
    DEV_SECRET,
    Config,
    check_deployment,
    cluster_seeds,
    is_cluster_url,
    plain_redis_url,
)
from server.metrics import Metrics
from server.storage import db
from server.storage.cluster.client import QueueingCluster
from server.storage.keys import Keys

log = logging.getLogger("giftwire")

# Failures of a backend, not of a request or of the code: redis-py's connection errors (the
# blocking pool's "No connection available." among them) and timeouts; asyncpg's lost or refused
# connections; and the OSError family the script runner's own connection raises. The HTTP API
# answers them 503 `unavailable`, the WebSocket edge `unavailable` with retry_ms: never a 500.
BACKEND_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
    TimeoutError,
)


# Set by the supervisor (server/supervisor/) in each worker process it starts: the worker's slot.
WORKER_ENV = "GIFTWIRE_WORKER_INDEX"


def worker_index() -> int | None:
    """This process's worker slot under a supervisor (0..N-1), None when it runs alone."""
    raw = os.environ.get(WORKER_ENV)
    return int(raw) if raw and raw.isdigit() else None


def process_name() -> str:
    """Names this server process among all of a deployment's (heartbeats, the operator view)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """From an `except` block: a backend that cannot serve now is an operating condition, one
    WARNING line (an outage must not flood the log with tracebacks); anything else is a bug,
    logged with its traceback."""
    if isinstance(exc, BACKEND_UNAVAILABLE):
        logger.warning("%s: backend unavailable (%s: %s)", what, type(exc).__name__, exc)
    else:
        logger.exception("%s failed", what)


def redis_client(url: str, *, max_connections: int = 64, pool_wait_s: float = 5.0,
                 cluster: bool = False, **kwargs: Any) -> Redis:
    """A client whose pool queues: a command finding every connection busy waits up to
    `pool_wait_s` for one (a burst is served in turn, not failed) and then raises redis-py's
    `ConnectionError`, which the HTTP API answers 503 and the WebSocket edge `unavailable`.

    On a cluster (`cluster`, or a `redis+cluster://` URL) redis-py's `RedisCluster`: it routes
    each command by its key's slot and splits multi-key commands. Typed `Redis` for the callers:
    every command giftwire sends outside the script runner and pub/sub is one both clients have."""
    # Commands get a timeout so a dead Redis is noticed; pub/sub builds its own policy (hub).
    kwargs.setdefault("socket_timeout", 10)
    kwargs.setdefault("socket_connect_timeout", 5)
    if cluster or is_cluster_url(url):
        # At most `max_connections` commands in flight, the rest queue (storage/cluster/client.py).
        return cast(Redis, QueueingCluster.from_url(
            plain_redis_url(url), max_connections=max_connections, pool_wait_s=pool_wait_s,
            startup_nodes=[ClusterNode(h, p) for h, p in cluster_seeds(url)], **kwargs))
    kwargs.setdefault("health_check_interval", 15)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_wait_s, **kwargs
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def delete_prefix(redis: Redis, prefix: str, *, batch: int = 1000) -> int:
    """Unlink every key under a key prefix (a test's or a load run's namespace); returns the count.

    SCAN, not KEYS, so a big Redis is never blocked; never use this on a production prefix.
    """
    deleted = 0
    pending: list[bytes] = []
    async for key in redis.scan_iter(match=prefix + "*", count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += await redis.unlink(*pending)
            pending.clear()
    if pending:
        deleted += await redis.unlink(*pending)
    return deleted


@dataclass
class Runtime:
    config: Config
    redis: Redis
    pool: asyncpg.Pool
    keys: Keys
    issuer: TokenIssuer
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    # Postgres is off the spend path: a process starts without it and migrates when it returns.
    migrations: db.Migrator | None = None
    # Components, attached by the app's lifespan; typed loosely to keep imports one-way.
    components: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def open_runtime(config: Config, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    if config.redis_url is None or config.database_url is None:
        raise RuntimeError("open_runtime needs REDIS_URL and DATABASE_URL resolved")
    check_deployment(config)
    if config.jwt_secret == DEV_SECRET:
        log.warning("GIFTWIRE_JWT_SECRET is the development default (development mode only)")
    # migrate=False: the caller has migrated (tests, `rebuild` into a fresh schema).
    migrator = db.Migrator(config.database_url, config.db_schema, applied=not migrate)
    retrying: asyncio.Task[None] | None = None
    if migrate and not await migrator.attempt():
        retrying = asyncio.create_task(migrator.run(), name="postgres-migrations")
    redis = redis_client(config.redis_url, max_connections=config.redis_max_connections,
                         pool_wait_s=config.redis_pool_wait_s, cluster=config.cluster)
    pool = await db.create_pool(config.database_url, config.db_schema)
    keys = Keys(config.key_prefix, config.wallet_shards)
    try:
        yield Runtime(
            config=config,
            redis=redis,
            pool=pool,
            keys=keys,
            issuer=TokenIssuer(config.jwt_secret, keys, config.token_ttl_s),
            migrations=migrator,
        )
    finally:
        if retrying is not None:
            retrying.cancel()
            await asyncio.gather(retrying, return_exceptions=True)
        await pool.close()
        await redis.aclose()
