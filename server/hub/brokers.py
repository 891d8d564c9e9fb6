"""The pub/sub broker a process opens: classic pub/sub on one Redis, sharded pub/sub on a cluster
(where the Lua scripts SPUBLISH, so a classic SUBSCRIBE would hear nothing)."""

from __future__ import annotations

import re
from typing import cast

from redis.asyncio.cluster import RedisCluster

from server.hub.broker import Broker
from server.hub.broker_redis import RedisBroker
from server.hub.broker_sharded import ShardedBroker
from server.runtime import Runtime


def open_broker(rt: Runtime, purpose: str) -> Broker:
    """A broker named `giftwire-<purpose>-<key prefix>` (CLIENT SETNAME), not yet started."""
    cfg = rt.config
    ping_s = float(cfg.extra.get("pubsub_ping_s", max(0.5, cfg.heartbeat_s / 4)))
    # CLIENT SETNAME refuses spaces: keep the name to a safe alphabet whatever the prefix.
    tag = re.sub(r"[^A-Za-z0-9:._-]", "_", cfg.key_prefix)
    name = f"giftwire-{purpose}-{tag}"
    if cfg.cluster:
        return ShardedBroker(cast(RedisCluster, rt.redis), name=name, ping_interval_s=ping_s)
    assert cfg.redis_url is not None
    return RedisBroker(cfg.redis_url, rt.redis, name=name, ping_interval_s=ping_s)
