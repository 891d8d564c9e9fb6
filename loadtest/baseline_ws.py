"""Baseline: the raw `websockets` broadcast ceiling and its latency at a fixed load, same N.

A bare `websockets` server (no auth, no Redis, no protocol) holds N connections from the same
lean client the giftwire runs use, in the same number of client processes, and:
1. ceiling: broadcasts frames of 10 pre-encoded ~100-byte events as fast as the connections
   drain (it waits while any write buffer is over 64 KiB), counting events received per second;
2. single: the same with one event per frame (what a server without batching does); the
   server's CPU per frame written (process time over frames x connections) in both windows;
3. fixed load: broadcasts one event per frame at `deliveries_per_s / N` events/s, each carrying
   its send time, and records send-to-receive latency at every client.
Both windows are fixed monotonic times handed to every process up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from loadtest.wsclient import connect

EVENTS_PER_FRAME = 10
HIGH_WATER = 64 * 1024
SUBPROTOCOL = "baseline"


@dataclass(frozen=True, slots=True)
class Windows:
    ceiling: tuple[float, float]
    single: tuple[float, float]
    fixed: tuple[float, float]
    end: float


def _event(i: int, t: float) -> bytes:
    # The shape and size of a giftwire `gift` event, with a float send time added.
    return msgpack.packb({
        "type": "gift", "room": "r100", "seq": i, "eid": f"r100-{i}", "sender": "u42",
        "name": "Ann", "gift": "rose", "count": 1, "coins": 1, "ts": 1767225600456, "t": t,
    })


def server_main(port: int, windows: Windows, per_conn_rate: float, pipe: Connection) -> None:
    _run(_serve(port, windows, per_conn_rate, pipe))


async def _serve(port: int, w: Windows, per_conn_rate: float, pipe: Connection) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.typing import Subprotocol

    conns: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    sent: dict[str, Any] = {"fixed_events": 0}
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=4,
                     subprotocols=[Subprotocol(SUBPROTOCOL)],
                     ping_interval=None, write_limit=HIGH_WATER):
        pipe.send(("listening",))
        seq = 0
        for name, window, per_frame in (("ceiling", w.ceiling, EVENTS_PER_FRAME),
                                        ("single", w.single, 1)):
            await _until(window[0])
            frames = written = 0
            cpu = time.process_time()
            while time.monotonic() < window[1]:
                now = time.monotonic()
                items = [_event(seq + k, now) for k in range(per_frame)]
                seq += per_frame
                frame = bytes((0x90 | per_frame,)) + b"".join(items) if per_frame > 1 else items[0]
                broadcast(conns, frame)
                frames += 1
                written += len(conns)
                while any(c.transport.get_write_buffer_size() > HIGH_WATER for c in conns):
                    if time.monotonic() >= window[1]:
                        break
                    await asyncio.sleep(0.0005)  # let the kernel drain the sockets
                await asyncio.sleep(0)
            cpu = time.process_time() - cpu
            sent[f"{name}_frames"] = frames
            sent[f"{name}_cpu_us_per_frame"] = round(cpu / written * 1e6, 3) if written else None
        await _until(w.fixed[0])
        start = time.monotonic()
        issued = 0
        while (now := time.monotonic()) < w.fixed[1]:
            due = int((now - start) * per_conn_rate) - issued
            for _ in range(max(0, due)):
                broadcast(conns, _event(seq, time.monotonic()))
                seq += 1
                issued += 1
            await asyncio.sleep(0.001)
        sent["fixed_events"] = issued
        await _until(w.end)
    pipe.send(("done", sent))


def client_main(url: str, count: int, windows: Windows, pipe: Connection) -> None:
    _run(_clients(url, count, windows, pipe))


async def _clients(url: str, count: int, w: Windows, pipe: Connection) -> None:
    ceiling_events = single_events = 0
    latencies: list[float] = []
    unpack = msgpack.unpackb

    def on_message(data: bytes) -> None:
        nonlocal ceiling_events, single_events
        now = time.monotonic()
        value = unpack(data)
        if type(value) is list:
            if w.ceiling[0] + 0.5 <= now <= w.ceiling[1]:
                ceiling_events += len(value)
        elif w.single[0] + 0.5 <= now <= w.single[1]:
            single_events += 1
        elif w.fixed[0] + 0.5 <= value["t"] <= w.fixed[1]:
            latencies.append(now - value["t"])

    conns = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            conns.append(await connect(url, SUBPROTOCOL, on_message, lambda _c: None, 20))

    failures = 0
    for result in await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True):
        if isinstance(result, BaseException):
            failures += 1
    pipe.send(("ready", len(conns), failures))
    await _until(w.end)
    for c in conns:
        c.close()
    pipe.send(("done", ceiling_events, single_events, latencies))


async def _until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def measure_broadcast(
    connections: int, deliveries_per_s: float, processes: int, window_s: float = 4.0
) -> dict[str, Any]:
    """Run the two windows against `connections` clients; return the figures."""
    import multiprocessing

    from loadtest.stats import summary_ms
    from server.storage.embedded import free_port

    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    # Generous room for N connections to open before the first window.
    setup = 5.0 + connections / 500
    start = time.monotonic() + setup
    step = window_s + 0.5
    w = Windows((start, start + window_s), (start + step, start + step + window_s),
                (start + 2 * step, start + 2 * step + window_s), start + 3 * step + 0.5)
    s_parent, s_child = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(port, w, deliveries_per_s / connections,
                                                    s_child), daemon=True)
    server.start()
    if not s_parent.poll(30):
        server.kill()
        raise RuntimeError("the baseline websockets server did not start")
    s_parent.recv()
    clients = []
    url = f"ws://127.0.0.1:{port}/"
    for i in range(processes):
        n = connections // processes + (1 if i < connections % processes else 0)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_main, args=(url, n, w, child), daemon=True)
        proc.start()
        clients.append((proc, parent))
    opened = failed = 0
    events = singles = 0
    latencies: list[float] = []
    try:
        for _proc, pipe in clients:
            if pipe.poll(setup + 60):
                _, ok, bad = pipe.recv()
                opened, failed = opened + ok, failed + bad
        for _proc, pipe in clients:
            if pipe.poll(max(1.0, w.end - time.monotonic() + 30)):
                _, n, one, lat = pipe.recv()
                events += n
                singles += one
                latencies += lat
        sent = s_parent.recv() if s_parent.poll(30) else ("done", {})
    finally:
        for proc, _ in clients:
            proc.join(10)
            with contextlib.suppress(Exception):
                proc.kill()
        server.join(10)
        with contextlib.suppress(Exception):
            server.kill()
    return {
        "connections": opened,
        "connect_failures": failed,
        "events_per_frame": EVENTS_PER_FRAME,
        "ceiling_events_per_s": round(events / (window_s - 0.5), 1),
        "ceiling_cpu_us_per_frame": sent[1].get("ceiling_cpu_us_per_frame"),
        # One event per frame: the baseline issue 13's saturation goals are ratios to.
        "single_events_per_s": round(singles / (window_s - 0.5), 1),
        "single_cpu_us_per_frame": sent[1].get("single_cpu_us_per_frame"),
        "fixed_deliveries_per_s": deliveries_per_s,
        "fixed_p99_ms": summary_ms(latencies)["p99"],
        "fixed_ms": summary_ms(latencies),
        "server_sent": sent[1],
    }
