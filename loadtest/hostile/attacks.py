"""The attacks of issue 10's table, each an async function that runs until `stop` is set and
returns what it observed (HTTP 5xx answers, closes, what it managed to get accepted).

Every attack runs against 127.0.0.1 only, in bounded loops: the run's own server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.exceptions import InvalidMessage
from websockets.frames import Frame, Opcode

from protocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK


@dataclass(frozen=True)
class Target:
    port: int
    viewer_token: str  # a funded viewer of its own (not the honest pair's)
    creator_token: str  # the room's creator
    room: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Attack = Callable[[Target, asyncio.Event], Awaitable[dict[str, Any]]]


def frame(opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    """One client frame, byte for byte (masked, as a client must)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  subprotocol: str = SUBPROTOCOL_MSGPACK) -> bytes:
    """Send a WebSocket upgrade for /ws on an open connection; returns the response head."""
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n".encode())
    await writer.drain()
    return await reader.readuntil(b"\r\n\r\n")


async def _upgraded(port: int, subprotocol: str = SUBPROTOCOL_MSGPACK
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await upgrade(reader, writer, subprotocol)
    return reader, writer


async def _flood(target: Target, stop: asyncio.Event, payload: bytes, *, read: bool,
                 subprotocol: str = SUBPROTOCOL_MSGPACK) -> dict[str, Any]:
    """Reconnect and send `payload` over and over until stopped; count the server's cuts."""
    cuts = sent = 0
    while not stop.is_set():
        try:
            reader, writer = await _upgraded(target.port, subprotocol)
        except (OSError, asyncio.IncompleteReadError):
            cuts += 1
            continue
        drain = asyncio.create_task(_discard(reader)) if read else None
        try:
            while not stop.is_set():
                writer.write(payload)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(payload)
        except (OSError, TimeoutError):
            cuts += 1
        finally:
            if drain is not None:
                drain.cancel()
            writer.close()
    return {"bytes_sent": sent, "closed_by_server": cuts}


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes (or resets) this connection within `seconds`."""
    try:
        await asyncio.wait_for(_discard(reader), seconds)
    except TimeoutError:
        return False
    return True


async def _discard(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(65536):
            pass


async def ping_flood_not_reading(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """WebSocket pings from one connection that never reads its pongs, no token."""
    return await _flood(target, stop, frame(Opcode.PING, b"x" * 125) * 64, read=False)


async def ping_flood_reading(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """Four connections pinging as fast as they can, reading every pong."""
    results = await asyncio.gather(*(
        _flood(target, stop, frame(Opcode.PING, b"x" * 125) * 64, read=True) for _ in range(4)))
    return {k: sum(r[k] for r in results) for k in results[0]}


async def fragment_flood(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """Endless empty continuation frames in one message."""
    return await _flood(target, stop, frame(Opcode.TEXT, b"", fin=False)
                        + frame(Opcode.CONT, b"", fin=False) * 10_000, read=True)


async def invalid_utf8(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """Text frames that are not UTF-8."""
    return await _flood(target, stop, frame(Opcode.TEXT, b"\xff\xfe{}"), read=True,
                        subprotocol=SUBPROTOCOL_JSON)


async def unfinished_upgrades(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """2,000 sockets that start an upgrade and never finish it."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    for _ in range(2000):
        if stop.is_set():
            break
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        except OSError:
            refused += 1
            continue
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        opened.append((reader, writer))
    await stop.wait()
    # The server must close every one of them: at once past the per-address cap, the rest by
    # its handshake deadline (5 s by default).
    closed = await asyncio.gather(*(_closed_within(r, 15.0) for r, _ in opened))
    still_open = closed.count(False)
    for _, writer in opened:
        writer.close()
    return {"opened": len(opened), "refused_at_connect": refused,
            "still_open_at_end": still_open}


async def header_flood(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """64 MB of header lines, on connection after connection."""
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    accepted = cut = opened = 0
    while not stop.is_set():
        _reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        opened += 1
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            while not stop.is_set() and accepted < 64 << 20:
                writer.write(line * 16)
                await asyncio.wait_for(writer.drain(), 1.0)
                accepted += len(line) * 16
        except (OSError, TimeoutError):
            cut += 1
        writer.close()
    # Past 64 MB it only connects and closes: `connections` says how hard (a storm of accepts).
    return {"bytes_sent": accepted, "closed_by_server": cut, "connections": opened}


async def _http_burst(target: Target, stop: asyncio.Event, concurrency: int,
                      request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
                      ) -> dict[str, Any]:
    counts: dict[str, int] = {"requests": 0, "5xx": 0, "errors": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=target.base_url, timeout=30.0, limits=limits) as http:
        async def one() -> None:
            while not stop.is_set():
                try:
                    resp = await request(http)
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                counts["requests"] += 1
                counts["5xx"] += resp.status_code >= 500 and resp.status_code != 503
                counts.setdefault(str(resp.status_code), 0)
                counts[str(resp.status_code)] += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return counts


async def balance_burst(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """400 concurrent authenticated balance reads, over and over."""
    headers = {"authorization": f"Bearer {target.viewer_token}"}
    return await _http_burst(target, stop, 400,
                             lambda http: http.get("/api/me/balance", headers=headers))


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


async def deep_json(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """JSON nested 2,000 deep to every body route."""
    routes = ["/api/gifts", f"/api/rooms/{target.room}/goal", "/api/me/daily-limit",
              "/api/tokens/revoke"]
    headers = {"authorization": f"Bearer {target.creator_token}",
               "content-type": "application/json"}
    body = b'{"x": ' + _deep(2000) + b"}"
    index = iter(range(1 << 30))
    return await _http_burst(target, stop, 8, lambda http: http.post(
        routes[next(index) % len(routes)], content=body, headers=headers))


async def big_body(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """64 MB bodies to the goal route."""
    headers = {"authorization": f"Bearer {target.creator_token}",
               "content-type": "application/json"}
    body = b'{"title": "' + b"x" * (64 << 20) + b'"}'
    return await _http_burst(target, stop, 2, lambda http: http.post(
        f"/api/rooms/{target.room}/goal", content=body, headers=headers))


async def money_tricks(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """Duplicate JSON keys on a gift, and a creator gifting their own room: nothing charged."""
    counts = {"duplicate_key_accepted": 0, "self_gift_accepted": 0, "requests": 0, "5xx": 0,
              "errors": 0}
    async with httpx.AsyncClient(base_url=target.base_url, timeout=30.0) as http:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                one = await _money_trick(http, target, i)
            except httpx.HTTPError:  # cut by the server (its rate limit closes the connection)
                counts["errors"] += 1
                continue
            for key, value in one.items():
                counts[key] += value
    return counts


async def _money_trick(http: httpx.AsyncClient, target: Target, i: int) -> dict[str, int]:
    dup = (f'{{"room": "{target.room}", "gift": "rose", "count": 1, "count": 1000, '
           f'"tx": "dup{i}"}}').encode()
    resp = await http.post("/api/gifts", content=dup, headers={
        "authorization": f"Bearer {target.viewer_token}", "content-type": "application/json"})
    own = json.dumps({"room": target.room, "gift": "rose", "count": 1, "tx": f"own{i}"})
    resp2 = await http.post("/api/gifts", content=own, headers={
        "authorization": f"Bearer {target.creator_token}", "content-type": "application/json"})
    return {"duplicate_key_accepted": resp.status_code == 200,
            "self_gift_accepted": resp2.status_code == 200, "requests": 2,
            "5xx": (resp.status_code >= 500) + (resp2.status_code >= 500)}


async def revoked_token(target: Target, stop: asyncio.Event) -> dict[str, Any]:
    """A session whose token is revoked keeps gifting: how long is it still served?"""
    from websockets.asyncio.client import connect

    from protocol import Ack, Hello, Join, SendGift, codec_for

    codec = codec_for(SUBPROTOCOL_MSGPACK)
    for attempt in range(60):  # the address may be over its accept rate from the attacks before
        try:
            ws = await connect(f"ws://127.0.0.1:{target.port}/ws",
                               subprotocols=[SUBPROTOCOL_MSGPACK])  # type: ignore[list-item]
            break
        except (OSError, InvalidMessage):
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)  # the attacker's own backoff
    await ws.send(codec.encode_client(Hello(v=1, client="revoked", token=target.viewer_token)))
    await ws.recv()
    await ws.send(codec.encode_client(Join(id="j", room=target.room)))
    await ws.recv()
    async with httpx.AsyncClient(base_url=target.base_url, timeout=30.0) as http:
        for _ in range(30):  # the address may be over its HTTP rate from the attacks before
            resp = await http.post("/api/tokens/revoke", json={"token": target.viewer_token},
                                   headers={"authorization": f"Bearer {target.viewer_token}"})
            if resp.status_code != 429:
                break
            await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
    revoked_at = asyncio.get_running_loop().time()
    last_ack, i = 0.0, 0
    with contextlib.suppress(Exception):
        # Past the attack window if need be: the server has half a heartbeat (10 s) to end it.
        while asyncio.get_running_loop().time() - revoked_at < 30:
            i += 1
            await ws.send(codec.encode_client(SendGift(id=f"r{i}", room=target.room,
                                                       gift="rose", count=1, tx=f"rev{i}")))
            for msg in codec.decode_server(await asyncio.wait_for(ws.recv(), 5.0)):
                if isinstance(msg, Ack):
                    last_ack = asyncio.get_running_loop().time() - revoked_at
            await asyncio.sleep(0.1)  # the attacker's own pace
    code = ws.close_code
    await ws.close()
    return {"close_code": code, "served_s_after_revocation": round(last_ack, 2)}


ATTACKS: dict[str, Attack] = {
    "ping-flood-not-reading": ping_flood_not_reading,
    "ping-flood-reading-x4": ping_flood_reading,
    "fragment-flood": fragment_flood,
    "unfinished-upgrades-2000": unfinished_upgrades,
    "header-flood-64mb": header_flood,
    "balance-burst-400": balance_burst,
    "deep-json-2000": deep_json,
    "big-body-64mb": big_body,
    "invalid-utf8": invalid_utf8,
    "money-tricks": money_tricks,
    "revoked-token": revoked_token,  # runs last: it revokes the attackers' viewer token
}


def run_attack(name: str, target: Target, seconds: float) -> dict[str, Any]:
    """One attack for `seconds`, in a process of its own (loadtest/hostile/run.py): its CPU must
    not be counted against the honest pair's latency, only against the server's."""

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        try:
            return await ATTACKS[name](target, stop)
        except Exception as exc:  # reported as the attack's result, not a crash of the run
            return {"error": repr(exc)}

    before = os.times()
    seen = asyncio.run(main())
    after = os.times()
    # The attacker's own CPU (sending included: loopback TCP is the sender's kernel work), on the
    # same machine as the server and the pair: what the pair may be measuring besides the server.
    seen["attacker_cpu_s"] = round(after.user + after.system - before.user - before.system, 2)
    if hasattr(os, "sched_getaffinity"):  # the cores it ran on (loadtest/hostile/placement.py)
        seen["attacker_cpus"] = sorted(os.sched_getaffinity(0))
    return seen
