"""Lua scripts: loaded once from `server/lua/*.lua`, called by SHA, reloaded after NOSCRIPT.

`ScriptRunner.call` is the one way code runs a script. Concurrent calls are batched: a single
drain task takes everything queued since its last round trip and sends it as one pipeline
(auto-batching; see bench/baseline.md: the Python client, not Redis, bounds the spend path).
A NOSCRIPT reply means that call did not run at all, so it is safe to resend it (as EVAL).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

log = logging.getLogger("giftwire.scripts")

LUA_DIR = Path(__file__).with_name("lua")
MAX_BATCH = 256

# Called with (script name, keys) before every call; tests use it to check cluster slots.
Observer = Callable[[str, Sequence[str]], None]


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str

    @classmethod
    def from_file(cls, path: Path) -> LuaScript:
        source = path.read_text()
        if not source.lstrip().startswith("--"):
            raise ValueError(f"{path.name} must open with its KEYS/ARGV header comment")
        return cls(path.stem, source, hashlib.sha1(source.encode()).hexdigest())


def load_scripts(directory: Path = LUA_DIR) -> dict[str, LuaScript]:
    return {p.stem: LuaScript.from_file(p) for p in sorted(directory.glob("*.lua"))}


class ScriptError(Exception):
    """A script raised an error (`redis.error_reply`), not a transport failure."""


@dataclass(slots=True)
class _Call:
    script: LuaScript
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future[Any]


class ScriptRunner:
    def __init__(
        self,
        redis: Redis,
        scripts: dict[str, LuaScript] | None = None,
        *,
        on_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts if scripts is not None else load_scripts()
        self._queue: list[_Call] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_latency = on_latency
        self.observer: Observer | None = None

    @property
    def scripts(self) -> dict[str, LuaScript]:
        return self._scripts

    async def load(self) -> None:
        """Register every script (start-up); also done lazily on NOSCRIPT."""
        for script in self._scripts.values():
            sha = await self._redis.script_load(script.source)
            if sha != script.sha:
                raise RuntimeError(f"Redis hashed {script.name} differently ({sha})")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="lua-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for call in self._queue:
            if not call.future.done():
                call.future.set_exception(ConnectionError("script runner stopped"))
        self._queue.clear()

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script, batched with whatever else is in flight. Raises ScriptError on an
        error reply from the script; transport errors propagate as redis exceptions."""
        script = self._scripts[name]
        if self.observer is not None:
            self.observer(name, keys)
        if self._task is None:  # not started (CLI tools, tests): one direct round trip
            return await self._direct(script, keys, args)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future))
        self._wakeup.set()
        return await future

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

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._run_batch(batch)
                except Exception as exc:  # transport failure: every caller in the batch hears it
                    for call in batch:
                        if not call.future.done():
                            call.future.set_exception(exc)

    async def _run_batch(self, batch: list[_Call]) -> None:
        retry = await self._send(batch, by_sha=True)
        if retry:
            # EVAL with the source cannot hit NOSCRIPT, however often the cache is flushed
            # meanwhile, and it re-caches the script for the next EVALSHA.
            log.warning("NOSCRIPT for %d call(s): resending with the script source", len(retry))
            await self._send(retry, by_sha=False)

    async def _send(self, calls: list[_Call], *, by_sha: bool) -> list[_Call]:
        """Send calls as one pipeline; settle their futures; return those that hit NOSCRIPT."""
        started = time.perf_counter()
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            if by_sha:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            else:
                pipe.eval(call.script.source, len(call.keys), *call.keys, *call.args)
        results = await pipe.execute(raise_on_error=False)
        elapsed = time.perf_counter() - started
        noscript: list[_Call] = []
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):
                noscript.append(call)
                continue
            self._observe(call.script.name, elapsed)
            if call.future.done():
                continue  # the caller gave up (cancelled); the script still ran
            if isinstance(result, ResponseError):
                call.future.set_exception(ScriptError(str(result)))
            elif isinstance(result, Exception):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)
        return noscript
