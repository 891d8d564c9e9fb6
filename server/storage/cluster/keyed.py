"""Keyed pipelines: commands of one key each, sent over lean connections (server/storage/resp.py)
to the node serving each key, replies back in the order given.

The ledger flusher reads and trims its shard streams this way. On one Redis every command goes
down one connection (`SingleKeyed`); on a cluster (`ClusterKeyed`) the commands are grouped by
the master serving their key, one pipeline per master, sent at once. A MOVED or ASK reply, or a
lost connection, refreshes the slot map and raises: the flusher's retry runs the step again, and
each of its steps is safe to repeat (XREADGROUP of new entries leaves them pending, XACK and
XTRIM are idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from server.storage.cluster.slots import Address, SlotMap
from server.storage.resp import Endpoint, RespClient

Keyed = tuple[str, bytes]  # (the command's key, the packed command)


class SingleKeyed:
    """One Redis: the keys are not needed."""

    def __init__(self, ep: Endpoint, *, name: str, timeout_s: float = 10.0) -> None:
        self._client = RespClient(ep, name=name, timeout_s=timeout_s)

    async def call_many(self, commands: Sequence[Keyed]) -> list[Any]:
        return await self._client.call_many([payload for _, payload in commands])

    def close(self) -> None:
        self._client.close()


class ClusterKeyed:
    def __init__(self, redis: RedisCluster, *, name: str, timeout_s: float = 10.0) -> None:
        self._redis = redis
        self._name = name
        self._timeout_s = timeout_s
        self._slots: SlotMap | None = None
        self._clients: dict[Address, RespClient] = {}

    async def call_many(self, commands: Sequence[Keyed]) -> list[Any]:
        if self._slots is None:
            await self._redis.initialize()
            self._slots = SlotMap.of(self._redis, name=f"{self._name}-slots")
            await self._slots.refresh()
        slots = self._slots
        groups: dict[Address, list[int]] = {}
        for i, (key, _) in enumerate(commands):
            address = slots.owner_of(key)
            if address is None:
                await slots.refresh()
                raise ConnectionError(f"no cluster master serves {key}'s slot")
            groups.setdefault(address, []).append(i)
        results = await asyncio.gather(
            *(self._node_call(address, [commands[i][1] for i in indexes])
              for address, indexes in groups.items()),
            return_exceptions=True)
        replies: list[Any] = [None] * len(commands)
        failure: BaseException | None = None
        for (_, indexes), result in zip(groups.items(), results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            for i, reply in zip(indexes, result, strict=True):
                replies[i] = reply
        if failure is not None:
            if isinstance(failure, OSError) or str(failure).startswith(
                    ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN")):
                await slots.refresh()  # the retry goes where the slots are now
            raise failure
        return replies

    async def _node_call(self, address: Address, payloads: list[bytes]) -> list[Any]:
        client = self._clients.get(address)
        if client is None:
            assert self._slots is not None
            client = self._clients[address] = RespClient(
                self._slots.endpoint(address), name=self._name, timeout_s=self._timeout_s)
        try:
            return await client.call_many(payloads)
        except OSError:
            client.close()
            self._clients.pop(address, None)
            raise

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


def keyed_client(redis: Any, *, name: str) -> SingleKeyed | ClusterKeyed:
    if isinstance(redis, RedisCluster):
        return ClusterKeyed(redis, name=name)
    return SingleKeyed(Endpoint.of(redis), name=name)
