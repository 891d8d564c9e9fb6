import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.config import Config
from server.storage.scripts import (
    LuaScript,
    ScriptError,
    ScriptKeys,
    ScriptRunner,
    load_scripts,
)


def _script(name: str, source: str) -> LuaScript:
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())


INCR = _script(
    "incr", "-- KEYS[1] counter; ARGV[1] step\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
)
FAIL = _script("fail", "-- no keys\nreturn redis.error_reply('nope')")


@contextlib.asynccontextmanager
async def _started(runner: ScriptRunner, script: LuaScript) -> AsyncIterator[ScriptRunner]:
    """A started runner of `script` alone, on the fixture runner's Redis."""
    r = ScriptRunner(runner._redis, {script.name: script})
    r.start()
    try:
        yield r
    finally:
        await r.stop()


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


class _Proxy:
    """A TCP proxy in front of the real Redis whose replies can be held back (a hung network)
    or whose connections can be cut (a network failure), to test the runner's transport."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.links: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            while data := await src.read(65536):
                if held:
                    await self.flowing.wait()
                dst.write(data)
            dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True),
                             return_exceptions=True)

    def cut(self) -> None:
        for w in self.links:
            w.transport.abort()
        self.links.clear()

    async def stop(self) -> None:
        self.cut()
        self.flowing.set()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxied(redis: Redis) -> AsyncIterator[tuple[_Proxy, Redis]]:
    kw = redis.connection_pool.connection_kwargs
    if "path" in kw:
        pytest.fail("these tests need Redis over TCP")
    proxy = _Proxy(kw["host"], kw["port"])
    port = await proxy.start()
    client = Redis(host="127.0.0.1", port=port, db=kw.get("db", 0), password=kw.get("password"))
    yield proxy, client
    await proxy.stop()
    await client.aclose()


async def _until_in_flight(runner: ScriptRunner, n: int) -> None:
    # The calls are queued by their tasks and written by a loop callback: a few loop turns
    # (yields, no timed sleep).
    for _ in range(100):
        if runner.in_flight >= n:
            return
        await asyncio.sleep(0)
    pytest.fail(f"{runner.in_flight} calls in flight, expected {n}")


async def test_many_batches_in_flight_at_once_and_a_cut_fails_only_those(
    proxied: tuple[_Proxy, Redis], redis: Redis, config: Config
) -> None:
    proxy, client = proxied
    key = config.key_prefix + "counter"
    runner = ScriptRunner(client, {"incr": INCR}, name="gw-test-cut")
    runner.start()
    try:
        assert await runner.call("incr", [key], [1]) == 1
        proxy.flowing.clear()  # replies held: each wave below is its own batch, all in flight
        first = [asyncio.ensure_future(runner.call("incr", [key], [1])) for _ in range(100)]
        await _until_in_flight(runner, 100)
        second = [asyncio.ensure_future(runner.call("incr", [key], [1])) for _ in range(100)]
        await _until_in_flight(runner, 200)  # written without waiting for the first's replies
        proxy.cut()
        results = await asyncio.gather(*first, *second, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        proxy.flowing.set()
        # The next calls reconnect. The cut calls' outcome is unknown to their callers (here
        # they ran: only their replies were held), which is why spends are idempotent by tx.
        after = await asyncio.gather(*(runner.call("incr", [key], [1]) for _ in range(50)))
        ran = int(await redis.get(key))
        assert sorted(after) == list(range(ran - 49, ran + 1))
        assert runner.reconnects == 2
    finally:
        await runner.stop()


async def test_a_reply_later_than_the_timeout_drops_the_connection(
    proxied: tuple[_Proxy, Redis], config: Config
) -> None:
    proxy, client = proxied
    key = config.key_prefix + "counter"
    runner = ScriptRunner(client, {"incr": INCR}, timeout_s=0.4, name="gw-test-timeout")
    runner.start()
    try:
        await runner.call("incr", [key], [1])
        proxy.flowing.clear()
        with pytest.raises(ConnectionError):
            await runner.call("incr", [key], [1])
        proxy.flowing.set()
        assert await runner.call("incr", [key], [1]) == 3
    finally:
        await runner.stop()


async def test_calls_fail_while_redis_is_unreachable_then_succeed(
    redis: Redis, config: Config
) -> None:
    key = config.key_prefix + "counter"
    proxy = _Proxy("127.0.0.1", 1)  # nothing listens upstream: every connection is refused
    kw = redis.connection_pool.connection_kwargs
    if "path" in kw:
        pytest.fail("this test needs Redis over TCP")
    port = await proxy.start()
    client = Redis(host="127.0.0.1", port=port, db=kw.get("db", 0))
    runner = ScriptRunner(client, {"incr": INCR}, name="gw-test-down")
    runner.start()
    try:
        results = await asyncio.gather(*(runner.call("incr", [key], [1]) for _ in range(20)),
                                       return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        proxy.target = (kw["host"], kw["port"])  # Redis is back
        assert await runner.call("incr", [key], [1]) == 1
    finally:
        await runner.stop()
        await proxy.stop()
        await client.aclose()


async def test_arguments_of_every_kind_reach_the_script(
    runner: ScriptRunner, config: Config
) -> None:
    echo = _script("echo", "-- KEYS[1] any; ARGV echoed\nreturn ARGV")
    async with _started(runner, echo) as r:
        got = await r.call("echo", [config.key_prefix + "k"],
                           ["", "é ü \u4e2d", b"\x00\xff", 0, -7, 2**53, 1.5])
        assert got == [b"", "é ü \u4e2d".encode(), b"\x00\xff", b"0", b"-7", b"9007199254740992",
                       b"1.5"]
        with pytest.raises(TypeError):
            await r.call("echo", [config.key_prefix + "k"], [True])


async def test_keys_packed_once_reach_the_script_as_keys(
    runner: ScriptRunner, config: Config
) -> None:
    """ScriptKeys (a room's keys, packed once for all its gifts) are the same call as a list."""
    keys_of = _script("keys_of", "-- KEYS echoed, then ARGV\nreturn {KEYS[1], KEYS[2], ARGV[1]}")
    async with _started(runner, keys_of) as r:
        names = [config.key_prefix + "{a}x", config.key_prefix + "{a}é"]
        packed = ScriptKeys(names)
        assert list(packed) == names and len(packed) == 2
        for args in (["v", 1], [b"\x00", 1.5]):  # the fast path and the general one
            got = await r.call("keys_of", packed, args)
            assert got == await r.call("keys_of", names, args)
            assert got[:2] == [n.encode() for n in names]


async def test_calls_beyond_the_bound_fail_at_once_and_change_nothing(
    proxied: tuple[_Proxy, Redis], redis: Redis, config: Config
) -> None:
    proxy, client = proxied
    key = config.key_prefix + "counter"
    runner = ScriptRunner(client, {"incr": INCR}, max_pending=50, name="gw-test-bound")
    runner.start()
    try:
        await runner.call("incr", [key], [1])
        proxy.flowing.clear()  # Redis answers nothing meanwhile: 50 calls stay in flight
        held = [asyncio.ensure_future(runner.call("incr", [key], [1])) for _ in range(50)]
        await _until_in_flight(runner, 50)
        with pytest.raises(ConnectionError, match="overloaded"):
            await runner.call("incr", [key], [100])
        proxy.flowing.set()
        assert sorted(await asyncio.gather(*held)) == list(range(2, 52))
        assert int(await redis.get(key)) == 51  # the refused call never ran
    finally:
        await runner.stop()
