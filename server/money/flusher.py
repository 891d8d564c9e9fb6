"""The ledger flusher: wallet-shard streams -> Postgres, exactly once.

Each shard's stream is read through one consumer group (`ledger`); every flusher (one per server
process, or `giftwire flush`) is a consumer with a unique name, so they share the work. A batch is:
read -> credit the creators of its gifts (idempotent, completes a spend whose own credit was lost)
-> COPY + one INSERT ... ON CONFLICT DO NOTHING, commit -> XACK -> trim. A crash before COMMIT
leaves the entries pending and they are written later; a crash after COMMIT and before XACK
replays them and the unique ledger key drops them. Entries left pending by a dead flusher are
taken over with XAUTOCLAIM once idle for `flush_claim_idle_ms`. While Postgres (or Redis) is down
the batch is retried with capped exponential backoff; the stream holds everything meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from redis.exceptions import RedisError, ResponseError

from server.money import ledger
from server.money.credits import MAX_CREDITS_PER_CALL, Credit, Crediter
from server.money.lag import stream_lag
from server.runtime import Runtime
from server.storage import db
from server.storage.cluster.keyed import ClusterKeyed, keyed_client
from server.storage.resp import pack, pack_ids

log = logging.getLogger("giftwire.flusher")

GROUP = "ledger"
CONSUMER_FORGET_MS = 3600_000
_BACKOFF_MAX_S = 5.0
STOP_TIMEOUT_S = 10.0
Entries = list[tuple[int, str, dict[bytes, bytes] | None]]  # (shard, stream id, fields)


_GROUP_B = GROUP.encode()


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Flusher:
    def __init__(self, rt: Runtime, wallet: Crediter, *, database_url: str | None = None) -> None:
        self._rt = rt
        self._wallet = wallet
        self._cfg = rt.config
        self._dsn = database_url or rt.config.database_url
        self._streams = rt.keys.ledger_streams()
        self._shard_of = {s: i for i, s in enumerate(self._streams)}
        self.name = consumer_name()
        self._conn: asyncpg.Connection | None = None
        # Stream reads go over a lean connection: redis-py's parsing of XREADGROUP replies was
        # half the flusher's CPU at the spend peak (BENCHMARKS.md, ledger). On a cluster, one
        # connection per master and one XREADGROUP per stream (a command's keys share a slot).
        self._reads = keyed_client(rt.redis, name=f"giftwire-flusher-{self.name}")
        self._cluster = isinstance(self._reads, ClusterKeyed)
        # The next batch, read while this one is written (only when a full batch says we are
        # behind). Its entries are pending on this consumer, so a crash meanwhile loses nothing.
        self._ahead: asyncio.Task[tuple[Entries, int]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._groups_ready = False
        # After a failed step, read this consumer's own pending entries first: a read failing on one
        # master left the others' entries pending here, or they waited for the claim (30 s).
        self._own_first = False
        self._stopping = False
        self._caught_up = asyncio.Event()
        self._failing = asyncio.Event()
        self.failures = 0  # failed attempts (a backend down), for logs and tests
        self.written = 0  # new ledger transactions written by this flusher
        self.lag_entries = 0  # as of the last report_lag
        self.lag_s = 0.0
        self._failures_reported = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="ledger-flusher")

    def request_stop(self) -> None:
        """Stop at the next step: a flag as well as the cancellation, because a client library
        that swallows a CancelledError mid-await must not keep the loop (and a shutdown) alive."""
        self._stopping = True

    async def stop(self) -> None:
        self.request_stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _done, pending = await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
            if pending:
                log.error("flusher did not stop within %.0fs", STOP_TIMEOUT_S)
        await self._close()

    async def run(self) -> None:
        """Flush until stopped (cancelled or `request_stop`)."""
        next_claim = 0.0
        claim_every = max(self._cfg.flush_claim_idle_ms / 2000, 0.05)
        while not self._stopping:
            if time.monotonic() >= next_claim:
                await self._retrying(self._claim_and_flush, self._cfg.flush_claim_idle_ms)
                next_claim = time.monotonic() + claim_every
            await self._retrying(self._read_and_flush, self._cfg.flush_block_ms)

    async def drain(self, *, claim_all: bool = False) -> int:
        """Flush until the streams hold nothing new (CLI, tests); return entries processed.
        `claim_all` also takes over entries pending on any other consumer, however recent."""
        total = 0
        if claim_all:
            total += await self._retrying(self._claim_and_flush, 0)
        while (n := await self._retrying(self._read_and_flush, None)) > 0:
            total += n
        return total

    # -- one step ---------------------------------------------------------------------------
    async def _retrying(self, step: Any, arg: Any) -> int:
        delay = 0.05
        while not self._stopping:
            try:
                return int(await step(arg))
            except Exception as exc:
                # A backend down (the expected case) or a bug: either way the entries stay in
                # the stream, so retrying is always safe; only the log level differs.
                expected = isinstance(exc, (RedisError, asyncpg.PostgresError, *db.UNAVAILABLE))
                self.failures += 1
                self._own_first = True
                await self._close()
                behind = await self._lag_or_none()
                self._failing.set()  # after the lag report, which a waiter may read
                log.log(logging.WARNING if expected else logging.ERROR,
                        "flusher: %s: %s; ledger %s behind; retrying in %.2fs",
                        type(exc).__name__, exc, behind, delay, exc_info=not expected)
                await asyncio.sleep(delay)  # backoff while a backend is down
                delay = min(delay * 2, _BACKOFF_MAX_S)
        return 0

    async def _read(self, block_ms: int | None, count: int, tail: str = ">"
                    ) -> tuple[Entries, int]:
        """Up to `count` new entries of each stream (`tail` "0": this consumer's pending ones);
        and how many streams gave `count` (are behind)."""
        args: list[str | int] = ["XREADGROUP", "GROUP", GROUP, self.name, "COUNT", count]
        if self._cluster:
            # No BLOCK: a blocked read holds its connection, and each master has one. When every
            # stream is empty the flusher waits `block_ms` before reading again (an idle poll).
            commands = [(s, pack([*args, "STREAMS", s, tail])) for s in self._streams]
        else:
            if block_ms is not None:
                args += ["BLOCK", block_ms]
            tails = [tail] * len(self._streams)
            commands = [(self._streams[0], pack([*args, "STREAMS", *self._streams, *tails]))]
        try:
            replies = await self._reads.call_many(commands)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or its group was deleted: create it again
                self._groups_ready = False
            raise
        if self._cluster and block_ms and not any(replies):
            await asyncio.sleep(block_ms / 1000)  # idle poll interval, see above
        entries: Entries = []
        full = 0
        for stream, items in (row for reply in replies for row in reply or ()):
            shard = self._shard_of[stream.decode()]
            full += len(items) >= count
            for sid, flat in items:
                it = iter(flat or ())
                entries.append((shard, sid.decode(), dict(zip(it, it, strict=True)) or None))
        return entries, full

    async def _read_and_flush(self, block_ms: int | None) -> int:
        await self._ensure_groups()
        ahead, self._ahead = self._ahead, None
        batch = self._cfg.flush_batch
        if self._own_first and ahead is None:  # one pass, after a failure: see __init__
            entries, _ = await self._read(None, 4 * batch, tail="0")
            self._own_first = False
            if entries:
                await self._retrying(self._flush, entries)
                return len(entries)
        entries, behind = await ahead if ahead is not None else await self._read(block_ms, batch)
        if behind:
            # Behind: read the next batch while this one is written, and a larger one when few
            # streams are behind (one busy creator's credits): fewer, bigger transactions, with
            # at most about four batches' worth of entries in hand.
            self._ahead = asyncio.create_task(
                self._read(None, max(batch, 4 * batch // behind)), name="ledger-read-ahead")
        # A batch in hand is retried as it is: once read it is pending on this consumer and
        # would otherwise wait for a claim.
        await self._retrying(self._flush, entries)
        await self.report_lag()
        return len(entries)

    async def _claim_and_flush(self, min_idle_ms: int) -> int:
        await self._ensure_groups()
        total = 0
        for stream, shard in self._shard_of.items():
            start = "0-0"
            while True:
                reply = await self._rt.redis.xautoclaim(
                    stream, GROUP, self.name, min_idle_ms, start_id=start,
                    count=self._cfg.flush_batch,
                )
                start = _s(reply[0])
                entries: Entries = [
                    (shard, _s(sid), fields) for sid, fields in reply[1] if sid is not None
                ]
                if entries:
                    log.info("flusher %s claimed %d idle entries of shard %d",
                             self.name, len(entries), shard)
                    await self._retrying(self._flush, entries)
                    total += len(entries)
                if start == "0-0":
                    break
        await self._forget_idle_consumers()
        return total

    async def _forget_idle_consumers(self) -> None:
        # Every process start adds a consumer name; one with nothing pending that has not read
        # for an hour is a dead process (or an idle one, which XREADGROUP simply re-creates).
        redis = self._rt.redis
        for stream in self._streams:
            for c in await redis.xinfo_consumers(stream, GROUP):
                name = _s(c["name"])
                if name != self.name and not c["pending"] and c["idle"] > CONSUMER_FORGET_MS:
                    await redis.xgroup_delconsumer(stream, GROUP, name)

    async def _flush(self, entries: Entries) -> int:
        if not entries:
            return 0
        staged: list[ledger.StagedTx] = []
        done: list[tuple[int, str]] = []
        for shard, sid, fields in entries:
            if not fields:  # trimmed while pending (cannot happen with our trim rule)
                done.append((shard, sid))
                continue
            try:
                staged.append(ledger.parse_entry(shard, sid, fields))
                done.append((shard, sid))
            except (KeyError, ValueError):
                # Left pending (never trimmed, claimed again later) and shouted about.
                log.error("flusher: malformed ledger entry %s on shard %d: %r", sid, shard, fields)
        if staged:
            if self._rt.migrations is not None:
                self._rt.migrations.check()  # Postgres down since start: no tables to write to
            conn = await self._connection()
            new, uncredited = await ledger.write_batch(conn, staged)
            self.written += new
            self._rt.metrics.flushed.inc(new)
            # Complete credits lost between a spend and its credit (a crash), before the ack.
            await self._credit([t for t in staged if t.tx_key in uncredited])
        await self._ack_and_trim(done)
        return len(entries)

    async def _credit(self, staged: Sequence[ledger.StagedTx]) -> None:
        by_creator: dict[str, list[Credit]] = {}
        for t in staged:
            if t.kind == "gift" and t.counterparty:
                by_creator.setdefault(t.counterparty, []).append(Credit(
                    t.counterparty, t.user, t.ref, t.coins, t.room or "", t.gift or "",
                    t.count or 1,
                ))
        chunks = [
            (creator, items[i : i + MAX_CREDITS_PER_CALL])
            for creator, items in by_creator.items()
            for i in range(0, len(items), MAX_CREDITS_PER_CALL)
        ]
        # Mostly their credit entry was just not in this read: ask before re-crediting.
        missing = await asyncio.gather(*(self._wallet.uncredited(c, ch) for c, ch in chunks))
        calls = [self._wallet.credit_many(c, m) for (c, _), m in zip(chunks, missing, strict=True)
                 if m]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def _ack_and_trim(self, done: Sequence[tuple[int, str]]) -> None:
        by_shard: dict[int, list[str]] = {}
        for shard, sid in done:
            by_shard.setdefault(shard, []).append(sid)
        streams = [self._streams[shard] for shard in by_shard]
        commands = [(stream, pack_ids(["XACK", stream, GROUP], ids))
                    for stream, ids in zip(streams, by_shard.values(), strict=True)]
        for stream in streams:
            # The group's last-delivered id first: an entry delivered after it is pending (or
            # acknowledged) by the time XPENDING runs, so trimming to just past it never drops
            # an unflushed entry even when another consumer's read slips in between.
            commands += [(stream, pack(["XINFO", "GROUPS", stream])),
                         (stream, pack(["XPENDING", stream, GROUP]))]
        replies = (await self._reads.call_many(commands))[len(streams):]
        # Only what every consumer has acknowledged may go: below the oldest pending entry, and
        # never beyond what the group has delivered (undelivered entries are not yet flushed).
        trims = []
        for i, stream in enumerate(streams):
            groups, pending = replies[2 * i], replies[2 * i + 1]
            if pending[0]:  # XPENDING summary: [count, min id, max id, consumers]
                minid = pending[1].decode()
            else:
                info = [dict(zip(g[::2], g[1::2], strict=True)) for g in groups]  # XINFO's pairs
                last = next(d[b"last-delivered-id"] for d in info if d[b"name"] == _GROUP_B)
                ms, _, seq = last.decode().partition("-")
                minid = f"{ms}-{int(seq) + 1}"
            trims.append((stream, pack(["XTRIM", stream, "MINID", minid])))
        await self._reads.call_many(trims)

    async def report_lag(self) -> int:
        """Entries in the streams not yet in Postgres (acknowledged entries are trimmed), and how
        old the oldest of them is (`lag_s`): both as metrics and on the flusher."""
        streams = await stream_lag(self._rt.redis, self._streams)
        lag = sum(s.entries for s in streams)
        oldest = [s.oldest_ms for s in streams if s.oldest_ms is not None]
        self.lag_s = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
        self.lag_entries = lag
        self._rt.metrics.flusher_lag.set(lag)
        self._rt.metrics.flusher_lag_seconds.set(self.lag_s)
        if lag == 0:
            if self.failures != self._failures_reported:
                log.info("flusher: ledger caught up (%d failed attempts so far)", self.failures)
                self._failures_reported = self.failures
            self._caught_up.set()
        else:
            self._caught_up.clear()
        return int(lag)

    async def _lag_or_none(self) -> str:
        try:
            await self.report_lag()
        except RedisError as exc:  # Redis down too: say so rather than fail the retry loop
            return f"unknown ({type(exc).__name__})"
        return f"{self.lag_entries} entries, {self.lag_s:.1f}s"

    async def wait_failing(self) -> None:
        """Until an attempt of this (running) flusher fails."""
        self._failing.clear()
        await self._failing.wait()

    async def wait_caught_up(self) -> None:
        """Until a pass of this (running) flusher finds every stream empty."""
        self._caught_up.clear()
        await self._caught_up.wait()

    # -- connections ------------------------------------------------------------------------
    async def _ensure_groups(self) -> None:
        if self._groups_ready:
            return
        await ensure_groups(self._rt)
        self._groups_ready = True

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self._dsn, timeout=10, command_timeout=60,
                server_settings={"search_path": self._cfg.db_schema,
                                 "application_name": "giftwire-flusher"},
            )
            self._conn = conn  # set first: a failing prepare is closed by the retry
            await ledger.prepare(conn)
        return self._conn

    async def _close(self) -> None:
        self._reads.close()  # fails a read ahead in flight: its entries wait for a claim
        ahead = self._ahead
        if ahead is not None and not (ahead.done() and not ahead.cancelled()
                                      and ahead.exception() is None):
            self._ahead = None  # a batch read ahead in full stays in hand for the retry
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()


async def ensure_groups(rt: Runtime) -> None:
    """Create each shard stream's consumer group (from the start of the stream) if missing."""
    for stream in rt.keys.ledger_streams():
        try:
            await rt.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
