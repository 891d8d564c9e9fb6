"""The front door (server/edge/transport/gate.py): what a client can make the server hold before it
is anyone is bounded where the bytes arrive, and an honest client is not disturbed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.frames import Opcode

from server.auth import TokenIssuer
from server.config import ENV_NAMES, Config
from server.edge.transport.admission import EdgeLimits
from tests.conftest import with_config
from tests.edge.support import close_code, frame, raw, read_to_end, upgrade
from tests.hub.support import open_client
from tests.support.servers import RunningServer, inprocess_server

LIMITS = dict(http_max_header_bytes=2048, http_max_headers=16, http_max_body_bytes=1024,
              handshake_timeout_s=1.0)


@pytest.fixture
async def edge(config: Config, redis: object, pool: object) -> AsyncIterator[RunningServer]:
    async with inprocess_server(with_config(config, **LIMITS)) as running:
        yield running


def _status(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}")


async def _still_serves(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_an_endless_header_is_refused_431_once_it_passes_the_limit(
    edge: RunningServer,
) -> None:
    async with raw(edge.config.port) as (reader, writer):
        # No end of head ever: the server must refuse on the byte count alone.
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 2100)
        await writer.drain()
        status, problem = _status(await read_to_end(reader))
    assert (status, problem["code"]) == (431, "headers_too_large")
    await _still_serves(edge)


async def test_too_many_header_lines_are_refused_431(edge: RunningServer) -> None:
    async with raw(edge.config.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\n" + b"".join(
            f"X-H{i}: 1\r\n".encode() for i in range(17)) + b"\r\n")
        await writer.drain()
        status, _ = _status(await read_to_end(reader))
    assert status == 431


async def test_a_declared_body_over_the_limit_is_refused_413_before_it_is_sent(
    edge: RunningServer,
) -> None:
    async with raw(edge.config.port) as (reader, writer):
        writer.write(b"POST /api/gifts HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n")
        await writer.drain()
        status, problem = _status(await read_to_end(reader))
    assert (status, problem["code"]) == (413, "frame_too_large")


async def test_a_body_without_a_length_is_refused_411(edge: RunningServer) -> None:
    async with raw(edge.config.port) as (reader, writer):
        writer.write(b"POST /api/gifts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        status, problem = _status(await read_to_end(reader))
    assert (status, problem["code"]) == (411, "length_required")


@pytest.mark.parametrize("sent", [b"", b"GET /ws HTTP/1.1\r\nHost: x\r\n"])
async def test_a_head_not_finished_in_time_is_closed_408(edge: RunningServer, sent: bytes) -> None:
    async with raw(edge.config.port) as (reader, writer):
        writer.write(sent)
        await writer.drain()
        status, problem = _status(await read_to_end(reader))
    assert (status, problem["code"]) == (408, "handshake_timeout")


async def test_keep_alive_requests_are_each_bounded_and_honest_ones_pass(
    edge: RunningServer,
) -> None:
    async with raw(edge.config.port) as (reader, writer):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request + request)
        await writer.drain()
        first = await reader.readuntil(b"}")
        second = await reader.readuntil(b"}")
        assert b" 200 " in first and b" 200 " in second
        # The third request's head runs past the limit: the connection is cut.
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 2100)
        await writer.drain()
        assert await read_to_end(reader) == b""


async def test_connections_of_one_address_before_hello_are_capped(
    config: Config, redis: object, pool: object, issuer: TokenIssuer,
) -> None:
    cfg = with_config(config, max_pending_per_address=3, trusted_addresses="",
                      handshake_timeout_s=30.0)
    async with inprocess_server(cfg) as server:
        # Three upgraded WebSockets that never say hello hold the address's three slots.
        silent = [raw(server.config.port) for _ in range(3)]
        streams = [await s.__aenter__() for s in silent]
        try:
            for reader, writer in streams:
                assert b" 101 " in await upgrade(reader, writer)
            async with raw(server.config.port) as (reader, _writer):
                assert await read_to_end(reader) == b""  # a fourth is closed unread
        finally:
            for s in silent:
                await s.__aexit__(None, None, None)
        # Their slots are free again once they are gone: an honest client gets in and is served.
        viewer = await open_client(server.ws_url, issuer.mint("v", "viewer"))
        await viewer.close()
        await _still_serves(server)


async def test_a_hello_frees_the_pending_slot(
    config: Config, redis: object, pool: object, issuer: TokenIssuer,
) -> None:
    cfg = with_config(config, max_pending_per_address=2, trusted_addresses="")
    async with inprocess_server(cfg) as server:
        viewers = [await open_client(server.ws_url, issuer.mint(f"v{i}", "viewer"))
                   for i in range(5)]
        try:
            assert all(v.closed_code is None for v in viewers)
        finally:
            await asyncio.gather(*(v.close() for v in viewers))


async def test_new_connections_of_one_address_are_rate_limited(
    config: Config, redis: object, pool: object,
) -> None:
    cfg = with_config(config, trusted_addresses="", accept_rate_per_s=0.001, accept_burst=3)
    async with inprocess_server(cfg) as server:
        for _ in range(3):  # the burst: each served, each then closed by its client
            async with raw(server.config.port) as (reader, writer):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await writer.drain()
                assert b" 200 " in await read_to_end(reader)
        async with raw(server.config.port) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            assert await read_to_end(reader) == b""  # closed unread: a storm costs an accept


@pytest.mark.parametrize("bound", [
    {"refused_hold_max": 1},  # held by the process in all
    {"refused_hold_max": 1024, "max_pending_per_address": 1},  # held of one address
])
async def test_refused_connections_are_held_unread_up_to_a_bound_then_reset_at_once(
    config: Config, redis: object, pool: object, bound: dict[str, int],
) -> None:
    # A hold longer than any test: a refused connection that is reset here was not held.
    cfg = with_config(config, trusted_addresses="", accept_rate_per_s=0.001, accept_burst=1,
                      refused_hold_s=3600.0, **bound)
    async with inprocess_server(cfg) as server:
        async with raw(server.config.port) as (reader, writer):  # the burst: served
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            assert b" 200 " in await read_to_end(reader)
        async with raw(server.config.port) as (held, held_writer):
            held_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # never answered
            await held_writer.drain()
            async with raw(server.config.port) as (reader, _writer):
                # The one refused connection it may hold is held already: this one is reset now.
                assert await read_to_end(reader) == b""
            # Reset after the one above was accepted and refused: had it not been held, its reset
            # would have come first.
            assert not held.at_eof()


async def test_http_requests_of_one_address_are_rate_limited_before_they_are_read(
    config: Config, redis: object, pool: object,
) -> None:
    cfg = with_config(config, trusted_addresses="", http_rate_per_s=0.001, http_burst=3)
    async with inprocess_server(cfg) as server:
        async with raw(server.config.port) as (reader, writer):
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            for _ in range(3):
                writer.write(request)
                await writer.drain()
                assert b" 200 " in await reader.readuntil(b"}")
            writer.write(request)
            await writer.drain()
            response = await read_to_end(reader)
        status, problem = _status(response)
        assert (status, problem["code"]) == (429, "rate_limited")
        assert b"retry-after: " in response.lower()


def test_every_limit_of_the_socket_edge_is_in_the_protocol_docs_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    section = doc.split("### Limits of the socket edge", 1)[1].split("\n### ", 1)[0]
    missing = [ENV_NAMES[name] for name in EdgeLimits.__slots__
               if f"`{ENV_NAMES[name]}`" not in section]
    assert missing == []


async def _admitted(port: int) -> bool:
    """Whether a new connection is admitted (its upgrade answered 101) or refused unread."""
    async with raw(port) as (reader, writer):
        try:
            return b" 101 " in await upgrade(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            return False


async def test_a_connection_cut_for_breaking_an_edge_limit_costs_its_address_accept_tokens(
    config: Config, redis: object, pool: object,
) -> None:
    # No refill to speak of, and nothing held: a refused connection is reset at once.
    cfg = with_config(config, trusted_addresses="", accept_rate_per_s=0.001, accept_burst=8,
                      edge_violation_penalty=3, refused_hold_max=0)
    async with inprocess_server(cfg) as server:
        port = server.config.port
        assert await _admitted(port)  # an honest connection, closed by its client: 1 token
        async with raw(port) as (reader, writer):  # a ping flood: 1 token + 3 for its 1008
            assert b" 101 " in await upgrade(reader, writer)
            writer.write(frame(Opcode.PING, b"x" * 125) * 1000)
            await writer.drain()
            assert close_code(await read_to_end(reader)) == 1008
        admitted = 0
        while await _admitted(port):
            admitted += 1
        assert admitted == 8 - 1 - (1 + 3)


async def test_a_body_the_api_cannot_decode_costs_its_address_http_request_tokens(
    config: Config, redis: object, pool: object,
) -> None:
    cfg = with_config(config, trusted_addresses="", http_rate_per_s=0.001, http_burst=8,
                      edge_violation_penalty=3)
    async with inprocess_server(cfg) as server:
        auth = {"authorization": "Bearer " + server.runtime.issuer.mint("deep", "viewer"),
                "content-type": "application/json"}
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            # A refusal for another reason (a field the route does not take): 1 token.
            r = await http.post("/api/me/daily-limit", content=b'{"nope": 1}', headers=auth)
            assert (r.status_code, r.json()["code"]) == (400, "unknown_field")
            # JSON nested too deep: 1 token and 3 for the malformed body.
            r = await http.post("/api/me/daily-limit", content=b"[" * 40 + b"]" * 40,
                                headers=auth)
            assert r.status_code == 400, r.text
            served = 0
            while (await http.get("/healthz")).status_code == 200:
                served += 1
        assert served == 8 - 1 - (1 + 3)
