"""Lua scripts: loaded once from `server/storage/lua/*.lua`, called by SHA, reloaded after NOSCRIPT.

`ScriptRunner.call` is the one way code runs a script. Once started, calls go over the runner's
own connection (server/storage/resp.py): everything queued in one event-loop iteration is packed
here and written as one batch, without waiting for earlier batches' replies (a streaming
pipeline), and replies are matched in order. The Python client, not Redis, bounds the spend path
(BENCHMARKS.md), so the runner does as little per call as it can.
A NOSCRIPT reply means that call did not run at all, so it is safe to resend it (as EVAL).
A lost connection fails the calls in flight (`ConnectionError`: spends are idempotent by tx, so
the client retries) and the next call reconnects; a reply later than `timeout_s` drops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from server.storage.resp import Endpoint, RespConnection, bulk

log = logging.getLogger("giftwire.scripts")

LUA_DIR = Path(__file__).with_name("lua")
# `--!include NAME` on a line of its own is replaced by `lua/lib/NAME.lua` (Lua functions shared
# by several scripts: Redis has no modules for EVAL scripts, and a copy per script would drift).
_INCLUDE = re.compile(r"^--!include ([a-z_]+)$", re.MULTILINE)
# Calls queued or in flight at most; beyond it a call fails at once (the caller answers
# `unavailable` and the client retries) instead of queueing without bound.
MAX_PENDING = 20_000

# Called with (script name, keys) before every call; tests use it to check cluster slots.
Observer = Callable[[str, Sequence[str]], None]


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def from_file(cls, path: Path, *, sharded: bool = False) -> LuaScript:
        source = path.read_text()
        if not source.lstrip().startswith("--"):
            raise ValueError(f"{path.name} must open with its KEYS/ARGV header comment")
        source = _INCLUDE.sub(lambda m: (path.parent / "lib" / f"{m[1]}.lua").read_text(), source)
        if sharded:
            # On a cluster a room's events go out on sharded pub/sub (its channel is one of the
            # script's KEYS, in the room's slot); Redis 6.2, the single-Redis default, has no
            # SPUBLISH, so the .lua files say PUBLISH and the cluster runner loads this variant.
            source = source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
        return cls(path.stem, source, hashlib.sha1(source.encode()).hexdigest())


def load_scripts(directory: Path = LUA_DIR, *, sharded: bool = False) -> dict[str, LuaScript]:
    return {p.stem: LuaScript.from_file(p, sharded=sharded)
            for p in sorted(directory.glob("*.lua"))}


def _resp(values: Sequence[Any]) -> bytes:
    """RESP bulk strings of `values`. The common case (str and int, all ASCII) is formatted as
    one str and encoded once, about twice as fast as encoding value by value."""
    out = []
    for arg in values:
        kind = type(arg)
        if kind is str:
            out.append(f"${len(arg)}\r\n{arg}\r\n")
        elif kind is int:
            text = str(arg)
            out.append(f"${len(text)}\r\n{text}\r\n")
        else:
            break  # bytes, floats (or refused types): the general path below
    else:
        text = "".join(out)
        if text.isascii():  # else len() counted characters, not bytes
            return text.encode()
    return b"".join([bulk(a) for a in values])


class ScriptKeys(tuple[str, ...]):
    """A script's KEYS that callers reuse call after call (a room's 13 keys for each of its
    gifts, a sender's wallet keys): numkeys and the keys are packed once, here, instead of on
    every call. Still a tuple of the key names, so routing (cluster) and observers see keys."""

    resp: bytes

    def __new__(cls, keys: Sequence[str]) -> ScriptKeys:
        made = super().__new__(cls, keys)
        made.resp = _resp((len(made), *made))
        return made


def _pack_body(keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """RESP of numkeys, keys and args."""
    if type(keys) is ScriptKeys:
        return keys.resp + _resp(args)
    return _resp((len(keys), *keys, *args))


class ScriptError(Exception):
    """A script raised an error (`redis.error_reply`), not a transport failure."""


@dataclass(slots=True)
class _Call:
    script: LuaScript
    body: bytes  # RESP of numkeys, keys, args: packed by the caller, so bad input fails there
    size: int  # the command's array length
    future: asyncio.Future[Any]
    by_sha: bool = True


class ScriptCalls:
    """What both runners share (this module's, and server/storage/cluster/runner.py's): the
    scripts and their EVALSHA heads, start-up registration, a call's RESP, the unstarted (CLI)
    path through redis-py, the latency hook, the batching tick, the background tasks and the
    watchdog over the open connections."""

    _timeout_s: float

    def __init__(self, redis: Any, scripts: dict[str, LuaScript],
                 on_latency: Callable[[str, float], None] | None) -> None:
        self._redis = redis  # start-up SCRIPT LOAD and unstarted (CLI) calls
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_scheduled = False
        self._scripts = scripts
        self._heads = {
            s.name: b"$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % s.sha.encode()
            for s in self._scripts.values()
        }
        self._on_latency = on_latency
        # Called with (script name, keys) before every call; tests use it to check slots.
        self.observer: Observer | None = None

    @property
    def scripts(self) -> dict[str, LuaScript]:
        return self._scripts

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script, batched with whatever else is in flight. Raises ScriptError on an
        error reply from the script; transport failures raise ConnectionError (an OSError)."""
        return await self.submit(name, keys, args)

    def submit(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def _register(self) -> None:
        """SCRIPT LOAD every script (on a cluster redis-py sends it to every master)."""
        for script in self._scripts.values():
            sha = await self._redis.script_load(script.source)
            if sha != script.sha:
                raise RuntimeError(f"Redis hashed {script.name} differently ({sha})")

    def _pack(self, call: Any) -> bytes:
        """A queued call (`script`, `by_sha`, `size`, `body`) as one RESP command."""
        if call.by_sha:
            head = self._heads[call.script.name]
        else:
            # EVAL with the source cannot hit NOSCRIPT, however often the cache is flushed
            # meanwhile, and it re-caches the script for the next EVALSHA.
            head = b"$4\r\nEVAL\r\n" + bulk(call.script.source)
        return b"*%d\r\n%s%s" % (call.size, head, call.body)

    async def _direct(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        started = time.perf_counter()
        try:
            result = await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            result = await self._redis.eval(script.source, len(keys), *keys, *args)
        except ResponseError as exc:
            raise ScriptError(str(exc)) from None
        self._observe(script.name, time.perf_counter() - started)
        return result

    def _observe(self, name: str, seconds: float) -> None:
        if self._on_latency is not None:
            self._on_latency(name, seconds)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After the current callbacks: every call made in this loop iteration is one batch.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        raise NotImplementedError

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _connections(self) -> Iterator[tuple[str, RespConnection]]:
        """(where, connection) for each connection that may have calls in flight."""
        raise NotImplementedError

    async def _watchdog(self) -> None:
        """Drop a connection whose oldest call waited longer than `timeout_s` (a dead Redis)."""
        while True:
            await asyncio.sleep(self._timeout_s / 4)  # the timeout's resolution, not a sync
            now = time.monotonic()
            for where, conn in list(self._connections()):
                if conn.oldest_age(now) > self._timeout_s:
                    log.warning("no script reply%s for %.1fs: dropping the connection",
                                where, self._timeout_s)
                    conn.close()


class ScriptRunner(ScriptCalls):
    def __init__(
        self,
        redis: Redis,
        scripts: dict[str, LuaScript] | None = None,
        *,
        on_latency: Callable[[str, float], None] | None = None,
        timeout_s: float = 10.0,
        name: str = "giftwire-scripts",
        max_pending: int = MAX_PENDING,
    ) -> None:
        super().__init__(redis, scripts if scripts is not None else load_scripts(), on_latency)
        self._endpoint = Endpoint.of(redis)
        self._queue: list[_Call] = []
        self._conn: RespConnection | None = None
        self._connect_wanted = asyncio.Event()
        self._resent = 0
        self._timeout_s = timeout_s
        self._name = name
        self._max_pending = max_pending
        self.reconnects = 0

    @property
    def in_flight(self) -> int:
        """Calls written and waiting for their replies."""
        conn = self._conn
        return conn.in_flight if conn is not None else 0

    async def load(self) -> None:
        """Register every script (start-up); also done lazily on NOSCRIPT."""
        await self._register()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._connector(), name="lua-connector"),
                asyncio.create_task(self._watchdog(), name="lua-watchdog"),
            ]

    async def stop(self) -> None:
        await self._cancel_tasks()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # fails the calls in flight
            await conn.wait_closed()
        self._fail_queued(ConnectionError("script runner stopped"))

    def submit(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """`call` without a coroutine: queue the call, return its future. Code that issues many
        calls at once gathers these futures instead of one task per call. Raises
        ConnectionError at once when `max_pending` calls are already waiting."""
        script = self._scripts[name]
        if self.observer is not None:
            self.observer(name, keys)
        if not self._tasks:  # not started (CLI tools, tests): one direct round trip
            return asyncio.ensure_future(self._direct(script, keys, args))
        conn = self._conn
        if len(self._queue) + (conn.in_flight if conn is not None else 0) >= self._max_pending:
            raise ConnectionError("the script runner is overloaded; retry shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, _pack_body(keys, args), 3 + len(keys) + len(args),
                                 future))
        self._schedule_flush()
        return future

    # -- the streaming pipeline -----------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        conn = self._conn
        if not self._queue:
            return
        if conn is None or not conn.is_open:
            self._connect_wanted.set()  # the connector flushes once connected
            return
        batch, self._queue = self._queue, []
        if self._resent:
            log.warning("NOSCRIPT for %d call(s): resending with the script source", self._resent)
            self._resent = 0
        conn.send(b"".join([self._pack(c) for c in batch]), batch)

    def _on_reply(self, call: _Call, reply: Any, elapsed: float) -> None:
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if call.by_sha and message.startswith("NOSCRIPT"):
                call.by_sha = False  # it did not run: resend it with the source
                self._resent += 1
                self._queue.append(call)
                self._schedule_flush()
                return
            self._observe(call.script.name, elapsed)
            if not call.future.done():
                call.future.set_exception(ScriptError(message))
            return
        self._observe(call.script.name, elapsed)
        if not call.future.done():  # else the caller gave up (cancelled); the script still ran
            call.future.set_result(reply)

    def _on_lost(self, call: _Call, exc: Exception) -> None:
        if not call.future.done():
            call.future.set_exception(exc)

    def _fail_queued(self, exc: Exception) -> None:
        queued, self._queue = self._queue, []
        for call in queued:
            if not call.future.done():
                call.future.set_exception(exc)

    async def _connector(self) -> None:
        """(Re)connects when calls are waiting and there is no open connection."""
        while True:
            await self._connect_wanted.wait()
            self._connect_wanted.clear()
            if self._conn is not None and self._conn.is_open:
                self._schedule_flush()
                continue
            try:
                self._conn = await RespConnection.open(
                    self._endpoint, self._on_reply, self._on_lost, name=self._name,
                    timeout_s=min(self._timeout_s, 5.0),
                )
            except OSError as exc:  # refused, timed out (TimeoutError), AUTH refused
                # The waiting calls hear it now; later calls try again.
                log.warning("cannot connect to Redis for scripts: %s", exc)
                self._fail_queued(ConnectionError(f"cannot reach Redis for scripts: {exc}"))
                continue
            self.reconnects += 1
            self._schedule_flush()

    def _connections(self) -> Iterator[tuple[str, RespConnection]]:
        if self._conn is not None:
            yield "", self._conn
