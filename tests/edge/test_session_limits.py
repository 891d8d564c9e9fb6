"""An open session follows its token (expiry and revocation end it with 4004), and the rate limit
counts requests by when they arrived, not by when a stalled server got to them."""

from __future__ import annotations

import asyncio
import threading
import time

from websockets.sync.client import connect as sync_connect

from protocol import SUBPROTOCOL_JSON, ErrorReply, Hello, Ping, Pong, Welcome, codec_for
from server.auth import TokenIssuer
from server.config import Config
from tests.conftest import with_config
from tests.hub.support import open_client
from tests.support.servers import RunningServer, inprocess_server


async def test_a_session_ends_4004_when_its_token_expires(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    short = await open_client(server.ws_url, issuer.mint("s", "viewer", ttl_s=2))
    other = await open_client(server.ws_url, issuer.mint("o", "viewer"))
    try:
        assert await short.wait_closed() == 4004
        errors = [m for m in short.messages if isinstance(m, ErrorReply)]
        assert [e.code for e in errors] == ["token_expired"]
        await other.send(Ping(id="still"))
        assert isinstance(await other.reply("still"), Pong)
    finally:
        await short.close()
        await other.close()


async def test_a_revoked_token_ends_its_open_sessions_4004(
    config: Config, redis: object, pool: object, issuer: TokenIssuer
) -> None:
    # Two server processes' worth of sessions: the revocation is read from Redis by each.
    cfg = with_config(config, heartbeat_s=2)
    async with inprocess_server(cfg) as one, inprocess_server(cfg) as two:
        token = issuer.mint("r", "viewer")
        sessions = [await open_client(s.ws_url, token) for s in (one, two)]
        other = await open_client(one.ws_url, issuer.mint("o", "viewer"))
        try:
            await issuer.revoke(token, one.runtime.redis)
            for session in sessions:
                assert await session.wait_closed() == 4004
                errors = [m for m in session.messages if isinstance(m, ErrorReply)]
                assert [e.code for e in errors] == ["token_revoked"]
            await other.send(Ping(id="still"))
            assert isinstance(await other.reply("still"), Pong)
        finally:
            await asyncio.gather(*(s.close() for s in (*sessions, other)))


def _steady_client(url: str, token: str, rate: float, count: int, started: threading.Event,
                   replies: list[object]) -> None:
    """A client that sends `count` pings at exactly `rate` per second, in its own thread, and
    collects every reply: what an honest app does whatever the server is going through."""
    codec = codec_for(SUBPROTOCOL_JSON)
    with sync_connect(url, subprotocols=[SUBPROTOCOL_JSON]) as ws:  # type: ignore[list-item]
        ws.send(codec.encode_client(Hello(v=1, client="steady", token=token)))
        assert isinstance(codec.decode_server(ws.recv())[0], Welcome)
        t0 = time.monotonic()
        for i in range(count):
            if i == 1:
                started.set()
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))  # the client's own pace
            ws.send(codec.encode_client(Ping(id=f"p{i}")))
        while len(replies) < count:
            replies.extend(codec.decode_server(ws.recv()))


async def test_a_steady_client_is_not_a_burst_after_a_server_stall(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rate, burst = server.config.rate_per_s, server.config.rate_burst
    count = int(rate * 5)
    started, replies = threading.Event(), []
    client = threading.Thread(target=_steady_client, args=(
        server.ws_url, issuer.mint("steady", "viewer"), rate * 0.9, count, started, replies))
    client.start()
    try:
        await asyncio.to_thread(started.wait, 30)
        # The server (this event loop) stalls for longer than the burst lasts at that rate:
        # more requests pile up in the socket than the bucket holds.
        time.sleep((burst + 20) / rate)
        await asyncio.to_thread(client.join, 60)
    finally:
        client.join(60)
    refused = [m for m in replies if isinstance(m, ErrorReply)]
    assert refused == []
    assert len([m for m in replies if isinstance(m, Pong)]) == count
