"""The spend gate's copy of room blocks: which users may not gift in which rooms.

Blocks are kept in Postgres (`room_blocks`, written by server/live/moderation.py). The spend script
cannot read the room's slot, so each wallet shard holds the blocks of its own users
(`keys.blocks(shard)`: "<room> <user>" -> 1), like its copies of the catalog and the live rooms:
spend.lua refuses a blocked sender in the same atomic step as the debit, so a gift is either
debited before a block lands or refused after it; no window between a check and the debit.

The hash carries a field "" once it has been loaded. A hash without it was lost (Redis data loss,
a flush) or never loaded: spend.lua answers `blocks_unloaded` and the wallet loads every missing
shard from Postgres (one query) before calling again: a lost copy is rebuilt before any gift is
checked against it. While Postgres cannot be read (an outage: spends must go on without it,
docs/ledger.md), a missing shard is loaded empty for `DEGRADED_TTL_S` seconds, then read again:
after a Redis loss during a Postgres outage, blocks are not enforced (gifts, joins) until
Postgres answers; a warning is logged. Writes go to Postgres first, then here, each after making
sure the shard is loaded (lua/blocks_load.lua: why a concurrent load cannot bring back a block
that was just lifted).
"""

from __future__ import annotations

import asyncio
import logging

from server.runtime import Runtime
from server.storage.db import UNAVAILABLE
from server.storage.scripts import ScriptRunner

log = logging.getLogger("giftwire.blocks")

LOADED = ""  # the field that says the hash was loaded from Postgres
DEGRADED_TTL_S = 5


def field(room: str, user: str) -> str:
    # Room ids have no space (an identifier), so the first space splits room from user.
    return f"{room} {user}"


class BlockGate:
    def __init__(self, rt: Runtime, runner: ScriptRunner) -> None:
        self._rt = rt
        self._runner = runner
        self._loading: asyncio.Future[int] | None = None

    async def load(self) -> int:
        """Load every shard whose hash is missing from Postgres; returns how many it loaded.
        Callers arriving while a load runs share it: a burst of spends that all found their
        shard unloaded costs one load, not one pipeline each (a cluster client's per-node pool
        does not queue, design in docs/scaling.md)."""
        loading = self._loading
        if loading is None or loading.done():
            loading = self._loading = asyncio.ensure_future(self._load())
        return await asyncio.shield(loading)

    async def _load(self) -> int:
        k, redis = self._rt.keys, self._rt.redis
        async with redis.pipeline(transaction=False) as pipe:
            for shard in range(k.wallet_shards):
                pipe.hexists(k.blocks(shard), LOADED)
            loaded = await pipe.execute()
        missing = {s for s, ok in enumerate(loaded) if not ok}
        if not missing:
            return 0
        ttl = 0
        try:
            rows = await self._rt.pool.fetch("SELECT room, user_id FROM room_blocks")
        except UNAVAILABLE as exc:
            log.warning("room blocks not loaded (%s: %s): gifts are not checked against them "
                        "for %ds", type(exc).__name__, exc, DEGRADED_TTL_S)
            rows, ttl = [], DEGRADED_TTL_S
        by_shard: dict[int, list[str]] = {s: [] for s in missing}
        for row in rows:
            shard = k.shard_of(row["user_id"])
            if shard in by_shard:
                by_shard[shard].append(field(row["room"], row["user_id"]))
        done = 0
        for shard, fields in by_shard.items():
            done += int(await self._runner.call("blocks_load", [k.blocks(shard)], [ttl, *fields]))
        return done

    async def blocked(self, room: str, user: str) -> bool:
        """Whether the user is blocked in the room (the join check; spends check in Lua)."""
        key = self._rt.keys.blocks(self._rt.keys.shard_of(user))
        loaded, found = await self._rt.redis.hmget(key, [LOADED, field(room, user)])
        if loaded is None:
            await self.load()
            loaded, found = await self._rt.redis.hmget(key, [LOADED, field(room, user)])
        return found is not None

    async def blocked_among(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (room, user) are blocked: one pipelined round trip after the load."""
        if not pairs:
            return set()
        await self.load()
        async with self._rt.redis.pipeline(transaction=False) as pipe:
            for room, user in pairs:
                pipe.hexists(self._key(user), field(room, user))
            found = await pipe.execute()
        return {pair for pair, hit in zip(pairs, found, strict=True) if hit}

    async def add(self, room: str, user: str) -> None:
        """After the block is in Postgres: from now on spends of the user there are refused."""
        await self.load()
        await self._rt.redis.hset(self._key(user), field(room, user), "1")

    async def remove(self, room: str, user: str) -> None:
        """After the block left Postgres (loaded first: a concurrent load cannot bring it back)."""
        await self.load()
        await self._rt.redis.hdel(self._key(user), field(room, user))

    def _key(self, user: str) -> str:
        return self._rt.keys.blocks(self._rt.keys.shard_of(user))
