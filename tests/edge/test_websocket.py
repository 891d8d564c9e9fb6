"""giftwire's WebSocket protocol (server/edge/transport/websocket.py): frames, fragments and control
frames are bounded where they arrive, with or without a token, and nobody else is disturbed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from websockets.frames import Opcode

from protocol import Ping, Pong
from server.auth import TokenIssuer
from server.config import Config
from server.edge.transport import websocket
from tests.conftest import with_config
from tests.edge.support import close_code, frame, raw, read_to_end, upgrade
from tests.hub.support import Client, open_client
from tests.support.servers import RunningServer, inprocess_server


@pytest.fixture
async def calm(server: RunningServer, issuer: TokenIssuer) -> AsyncIterator[Client]:
    client = await open_client(server.ws_url, issuer.mint("calm", "viewer"))
    yield client
    await client.close()


async def _answers(client: Client, rid: str) -> None:
    await client.send(Ping(id=rid))
    assert isinstance(await client.reply(rid), Pong)


async def test_a_message_of_endless_fragments_closes_1009(server: RunningServer,
                                                          calm: Client) -> None:
    async with raw(server.config.port) as (reader, writer):
        assert b" 101 " in await upgrade(reader, writer)
        # Two million empty continuations once froze the loop for seconds: now the 17th frame
        # of one message ends it, and nothing after it is parsed.
        writer.write(frame(Opcode.TEXT, b"", fin=False)
                     + frame(Opcode.CONT, b"", fin=False) * 5000)
        await writer.drain()
        assert close_code(await read_to_end(reader)) == 1009
    await _answers(calm, "after-fragments")


async def test_a_ping_flood_closes_1008(server: RunningServer, calm: Client) -> None:
    async with raw(server.config.port) as (reader, writer):
        assert b" 101 " in await upgrade(reader, writer)
        writer.write(frame(Opcode.PING, b"x" * 125) * 1000)
        await writer.drain()
        assert close_code(await read_to_end(reader)) == 1008
    await _answers(calm, "after-pings")


async def test_a_client_that_never_reads_its_pongs_is_cut_at_the_write_bound(
    config: Config, redis: object, pool: object, issuer: TokenIssuer,
) -> None:
    # Pings allowed without limit, so only the write bound stands between the flood and memory.
    cfg = with_config(config, ws_ping_rate_per_s=1e9, ws_ping_burst=10**9,
                      writer_max_bytes=64 * 1024)
    async with inprocess_server(cfg) as server:
        calm = await open_client(server.ws_url, issuer.mint("calm", "viewer"))
        try:
            async with raw(server.config.port, rcvbuf=4096) as (reader, writer):
                assert b" 101 " in await upgrade(reader, writer)
                ping = frame(Opcode.PING, b"x" * 125)
                cut = False
                for _ in range(2000):  # up to 32 MB of pongs asked for, never read
                    try:
                        writer.write(ping * 128)
                        await writer.drain()
                    except ConnectionError:
                        cut = True
                        break
                assert cut, "the server kept answering pings nobody read"
            await _answers(calm, "after-pongs")
        finally:
            await calm.close()


async def test_invalid_utf8_closes_1007_without_a_traceback(
    server: RunningServer, calm: Client, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="giftwire")
    async with raw(server.config.port) as (reader, writer):
        assert b" 101 " in await upgrade(reader, writer)
        writer.write(frame(Opcode.TEXT, b"\xff\xfe{}"))
        await writer.drain()
        assert close_code(await read_to_end(reader)) == 1007
    assert not [r for r in caplog.records if r.exc_info]
    assert [r for r in caplog.records if "invalid UTF-8" in r.getMessage()]
    await _answers(calm, "after-utf8")


async def test_an_oversized_frame_is_refused_from_its_header(server: RunningServer,
                                                             calm: Client) -> None:
    async with raw(server.config.port) as (reader, writer):
        assert b" 101 " in await upgrade(reader, writer)
        # The header announces 1 MiB; the payload is never sent: the refusal comes from the
        # header alone, so nothing of it was buffered.
        head = frame(Opcode.BINARY, b"x" * (1 << 20))[:14]
        writer.write(head)
        await writer.drain()
        assert close_code(await read_to_end(reader)) == 1009
    await _answers(calm, "after-big")


async def test_a_close_reply_behind_a_flood_ends_the_connection_without_the_close_timer(
    server: RunningServer, calm: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session closes (4002) while the rest of the flood waits unparsed, the client's close
    # reply in it. That rest was never parsed (the reply never seen), so the socket stayed open
    # until the close timer aborted it (10 s): a flood held a connection 10 s past its close.
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT_S", 3600.0)  # only the reply can end it now
    async with raw(server.config.port) as (reader, writer):
        assert b" 101 " in await upgrade(reader, writer)
        writer.write(frame(Opcode.BINARY, b"\xc1") * 2000
                     + frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
        await writer.drain()
        assert close_code(await read_to_end(reader)) == 4002
    await _answers(calm, "after-close-reply")
