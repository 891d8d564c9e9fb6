"""The cluster's slot map: which master serves each of the 16384 slots, read with CLUSTER SLOTS.

Our own small map instead of redis-py's: the script runner and the sharded broker keep their own
connections per master (server/storage/resp.py, server/hub/broker_sharded.py), and redis-py's map
lives in its private nodes manager. The seeds are the nodes the configuration named plus every
node seen since, so a refresh still works when the node it asked last is the one that died.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
from collections.abc import Iterable

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection

from server.storage.keys import cluster_slot
from server.storage.resp import Endpoint, RespClient

log = logging.getLogger("giftwire.cluster")

SLOTS = 16384
Address = tuple[str, int]


class SlotMapUnavailable(ConnectionError):
    """No known node answered CLUSTER SLOTS (the whole cluster is unreachable)."""


def cluster_endpoint(redis: RedisCluster) -> Endpoint:
    """AUTH user and password and TLS of a cluster client's nodes (host and port vary per node)."""
    kw = redis.get_connection_kwargs()
    return Endpoint(host=None, port=0, path=None, username=kw.get("username"),
                    password=kw.get("password"), db=0,
                    tls=issubclass(kw.get("connection_class", Connection), SSLConnection))


class SlotMap:
    def __init__(self, template: Endpoint, seeds: Iterable[Address], *,
                 name: str = "giftwire-slots", timeout_s: float = 2.0) -> None:
        self._template = template
        self._seeds: dict[Address, None] = dict.fromkeys(seeds)
        self._name = name
        self._timeout_s = timeout_s
        # Sorted range starts and, per range, its last slot and its master (None: unserved).
        self._starts: list[int] = []
        self._ranges: list[tuple[int, Address]] = []
        self._refreshing: asyncio.Task[None] | None = None
        self.version = 0  # +1 per refresh that changed the map

    @classmethod
    def of(cls, redis: RedisCluster, **kw: object) -> SlotMap:
        seeds = [(n.host, int(n.port)) for n in redis.get_nodes()]
        return cls(cluster_endpoint(redis), seeds, **kw)  # type: ignore[arg-type]

    def endpoint(self, address: Address) -> Endpoint:
        return dataclasses.replace(self._template, host=address[0], port=address[1])

    @property
    def masters(self) -> list[Address]:
        return sorted({addr for _, addr in self._ranges})

    def owner(self, slot: int) -> Address | None:
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0:
            return None
        last, addr = self._ranges[i]
        return addr if slot <= last else None

    def owner_of(self, key: str | bytes) -> Address | None:
        return self.owner(cluster_slot(key))

    def learn(self, address: Address) -> None:
        """A node named by a MOVED/ASK reply: a seed for later refreshes."""
        self._seeds.setdefault(address, None)

    async def refresh(self) -> None:
        """Read the map again; concurrent callers share one refresh."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.create_task(self._refresh(), name="slot-map")
        await asyncio.shield(task)

    async def _refresh(self) -> None:
        errors: list[str] = []
        # The last map's masters first (most likely up to date), then every other seed.
        for address in [*self.masters, *[a for a in self._seeds if a not in self.masters]]:
            client = RespClient(self.endpoint(address), name=self._name,
                               timeout_s=self._timeout_s)
            try:
                reply = await client.call("CLUSTER", "SLOTS")
            except (OSError, TimeoutError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            except Exception as exc:  # an error reply (e.g. LOADING): try the next node
                errors.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            finally:
                client.close()
            self._install(reply)
            return
        raise SlotMapUnavailable("no cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    def _install(self, reply: list[list[object]]) -> None:
        ranges: list[tuple[int, int, Address]] = []
        for row in reply:
            first, last, master = int(row[0]), int(row[1]), row[2]  # type: ignore[arg-type]
            assert isinstance(master, list)
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            address = (host or "127.0.0.1", int(master[1]))
            ranges.append((first, last, address))
            self.learn(address)
            for replica in row[3:]:
                assert isinstance(replica, list)
                rhost = replica[0].decode() if isinstance(replica[0], bytes) else str(replica[0])
                self.learn((rhost or "127.0.0.1", int(replica[1])))
        ranges.sort()
        new_ranges = [(last, addr) for _, last, addr in ranges]
        if new_ranges != self._ranges or [r[0] for r in ranges] != self._starts:
            self._starts = [first for first, _, _ in ranges]
            self._ranges = new_ranges
            self.version += 1
            log.info("cluster slot map: %d range(s) on %d master(s)", len(ranges),
                     len(self.masters))
