import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.config import Config
from server.scripts import LuaScript, ScriptError, ScriptRunner, load_scripts


def _script(name: str, source: str) -> LuaScript:
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())


INCR = _script(
    "incr", "-- KEYS[1] counter; ARGV[1] step\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
)
FAIL = _script("fail", "-- no keys\nreturn redis.error_reply('nope')")


@pytest.fixture
async def runner(redis: Redis) -> AsyncIterator[ScriptRunner]:
    r = ScriptRunner(redis, {"incr": INCR, "fail": FAIL})
    r.start()
    yield r
    await r.stop()


async def test_concurrent_calls_all_run_exactly_once(
    runner: ScriptRunner, redis: Redis, config: Config
) -> None:
    key = config.key_prefix + "counter"
    results = await asyncio.gather(*(runner.call("incr", [key], [1]) for _ in range(2000)))
    assert sorted(results) == list(range(1, 2001))
    assert int(await redis.get(key)) == 2000


async def test_script_flush_under_load_loses_no_call(
    runner: ScriptRunner, redis: Redis, config: Config
) -> None:
    key = config.key_prefix + "counter"
    await runner.call("incr", [key], [1])  # the script is registered now

    async def flusher() -> None:
        for _ in range(20):
            await redis.script_flush()
            await asyncio.sleep(0)  # let the batcher run between flushes

    calls = [runner.call("incr", [key], [1]) for _ in range(3000)]
    results = await asyncio.gather(flusher(), *calls)
    assert sorted(results[1:]) == list(range(2, 3002))
    assert int(await redis.get(key)) == 3001


async def test_an_error_reply_reaches_only_its_caller(
    runner: ScriptRunner, config: Config
) -> None:
    key = config.key_prefix + "counter"
    ok, failed = await asyncio.gather(
        runner.call("incr", [key], [5]), runner.call("fail", [], []), return_exceptions=True
    )
    assert ok == 5
    assert isinstance(failed, ScriptError) and "nope" in str(failed)


async def test_unstarted_runner_calls_directly_and_reloads(redis: Redis, config: Config) -> None:
    runner = ScriptRunner(redis, {"incr": INCR})
    await redis.script_flush()
    assert await runner.call("incr", [config.key_prefix + "c"], [3]) == 3


def test_every_shipped_script_opens_with_its_keys_header() -> None:
    for script in load_scripts().values():
        head = script.source.lstrip().splitlines()[:12]
        assert any("KEYS" in line for line in head), f"{script.name}.lua lacks a KEYS header"
