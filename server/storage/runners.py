"""The script runner for a Redis client: one pipeline to one Redis (server/storage/scripts.py), or
one per master of a cluster (server/storage/cluster/runner.py), with the same interface."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from server.storage.cluster.runner import ClusterScriptRunner
from server.storage.scripts import ScriptRunner


def script_runner(redis: Redis | RedisCluster, **kw: Any) -> ScriptRunner | ClusterScriptRunner:
    if isinstance(redis, RedisCluster):
        return ClusterScriptRunner(redis, **kw)
    return ScriptRunner(redis, **kw)
