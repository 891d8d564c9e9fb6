"""The ledger's lag: what the wallet-shard streams hold that is not yet in Postgres.

Acknowledged entries are trimmed, so a stream's length is its unflushed entries, and its first
entry's id (a Redis time in ms) dates the oldest of them. One read, used by the flusher's metrics
and by the operator view, so the two never disagree on what "lag" means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from redis.asyncio import Redis

from server.money import ledger


class StreamLag(NamedTuple):
    entries: int
    oldest_ms: int | None  # the oldest unflushed entry's Redis time; None when the stream is empty


async def stream_lag(redis: Redis, streams: Sequence[str]) -> list[StreamLag]:
    """Per stream, in order: its unflushed entries and the oldest one's time (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xlen(stream)
            pipe.xrange(stream, count=1)
        replies = await pipe.execute()
    return [StreamLag(int(length), ledger.entry_ms(_s(first[0][0])) if first else None)
            for length, first in zip(replies[0::2], replies[1::2], strict=True)]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
