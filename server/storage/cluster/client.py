"""The shared Redis client on a cluster: redis-py's `RedisCluster`, with a queue in front.

On one Redis the shared client's pool queues (runtime.redis_client: a command finding every
connection busy waits up to `redis_pool_wait_s`). redis-py's cluster pools do not: a command
finding its node's `max_connections` busy fails at once, and a burst (200 viewers joining at
once) failed joins that one Redis serves in turn. So here at most `max_connections` commands or
pipelines are in flight at once (each holds at most one connection per node), later ones wait up
to `pool_wait_s` for a turn and then fail with redis-py's `ConnectionError`, which the API answers
`unavailable`, the same contract as the single-Redis pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError


class _Turns:
    def __init__(self, limit: int, wait_s: float) -> None:
        self._free = asyncio.Semaphore(limit)
        self._wait_s = wait_s

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self._free.acquire(), self._wait_s)
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None

    async def __aexit__(self, *exc: object) -> None:
        self._free.release()


class QueueingCluster(RedisCluster):
    def __init__(self, *args: Any, pool_wait_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns = _Turns(int(kwargs.get("max_connections") or 64), pool_wait_s)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turns:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there, as documented
        return _QueueingPipeline(self, transaction, self.turns)


class _QueueingPipeline(ClusterPipeline):
    def __init__(self, client: RedisCluster, transaction: Any | None, turns: _Turns) -> None:
        super().__init__(client, transaction)
        self._turns = turns

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        async with self._turns:
            return await super().execute(*args, **kwargs)
