"""Publishing a room message from redis-py (the Lua scripts publish their own events): PUBLISH on
one Redis, SPUBLISH (sharded pub/sub, Redis >= 7.0) on a cluster, where the hub subscribes with
SSUBSCRIBE (server/hub/broker_sharded.py) and a classic PUBLISH would reach nobody."""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster


def publish(client: Any, channel: str, data: bytes) -> Any:
    """`client.publish` or `client.spublish`: a client (returns the awaitable) or a pipeline
    (queues the command)."""
    if isinstance(client, RedisCluster | ClusterPipeline):
        return client.spublish(channel, data)
    return client.publish(channel, data)
