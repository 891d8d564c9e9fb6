"""One input path for HTTP: every JSON body is read under the wire protocol's decoder rules
(duplicate keys, nesting depth, strict types) and its size is enforced while it streams in."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import TokenIssuer
from server.runtime import Runtime
from server.web.problem import STATUS
from tests.support.servers import RunningServer

DEEP = b'{"coins":' + b"[" * 2000 + b"]" * 2000 + b"}"


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.post("/api/rooms/stage/live", json={},
                              headers=_auth(server.runtime.issuer, "star", "creator"))
        assert r.status_code == 200, r.text
        yield client


def _auth(issuer: TokenIssuer, user: str, role: str = "viewer") -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(user, role),
            "Content-Type": "application/json"}


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def _coins(rt: Runtime, user: str) -> int:
    return int((await rt.components["wallet"].state(user)).coins)


# Every route that takes a body, with a token allowed past the route's role check.
BODY_ROUTES = [
    ("/api/gifts", "admin"), ("/api/purchases", "admin"), ("/api/me/daily-limit", "admin"),
    ("/api/me/redeem", "admin"), ("/api/admin/grant", "admin"), ("/api/admin/reverse", "admin"),
    ("/api/admin/unfreeze", "admin"), ("/api/tokens/revoke", "admin"),
    ("/api/rooms/stage/goal", "admin"), ("/api/rooms/stage/live", "creator"),
]


async def test_duplicate_keys_are_refused_and_nothing_is_charged(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    rt = server.runtime
    assert (await rt.components["wallet"].grant("dup", 5000, "g-dup", "root")).ok
    body = b'{"room":"stage","gift":"rose","count":1,"count":1000,"tx":"d1"}'
    r = await http.post("/api/gifts", content=body, headers=_auth(rt.issuer, "dup"))
    _problem(r, 400, "malformed_frame")
    assert await _coins(rt, "dup") == 5000
    assert not await rt.redis.exists(rt.keys.tx("dup", "d1"))


async def test_every_body_route_reads_through_the_protocol_decoder(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Deep nesting, duplicate keys and a non-object body get the same codes on every route."""
    rt = server.runtime
    for path, role in BODY_ROUTES:
        headers = _auth(rt.issuer, "ops" if role == "admin" else "star", role)
        _problem(await http.post(path, content=DEEP, headers=headers), 400, "malformed_frame")
        dup = b'{"a":1,"a":2}'
        _problem(await http.post(path, content=dup, headers=headers), 400, "malformed_frame")
        _problem(await http.post(path, content=b"[1]", headers=headers), 400, "invalid_message")
        _problem(await http.post(path, content=b'{"x":1}', headers=headers), 400, "unknown_field")
        big = json.dumps({"title": "x" * 20_000}).encode()
        _problem(await http.post(path, content=big, headers=headers), 413, "frame_too_large")


async def test_a_bad_body_is_refused_before_the_tokens_redis_lookup(
    server: RunningServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local refusals first: a deep or malformed JSON body never costs the revocation lookup (a
    Redis round trip), so it wins over `token_revoked`; a good body still meets the lookup."""
    rt = server.runtime
    lookups: list[str] = []
    check_revoked = rt.issuer.check_revoked

    async def counted(principal: Any, redis: Any) -> None:
        lookups.append(principal.user)
        await check_revoked(principal, redis)

    monkeypatch.setattr(rt.issuer, "check_revoked", counted)
    token = rt.issuer.mint("rev", "viewer")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for body in (DEEP, b'{"coins":' + b"[" * 17 + b"]" * 17 + b"}", b'{"coins":1,"coins":2}',
                 b"{nope"):
        r = await http.post("/api/me/daily-limit", content=body, headers=headers)
        _problem(r, 400, "malformed_frame")
    assert lookups == []
    # Brackets inside a string are text: not refused as nesting (the field's type is wrong).
    text = b'{"coins":"' + b"[" * 40 + b'"}'
    _problem(await http.post("/api/me/daily-limit", content=text, headers=headers), 400,
             "wrong_type")
    assert lookups == ["rev"]
    await rt.issuer.revoke(token, rt.redis)
    _problem(await http.post("/api/me/daily-limit", content=DEEP, headers=headers), 400,
             "malformed_frame")
    _problem(await http.post("/api/me/daily-limit", content=b'{"coins":5}', headers=headers), 401,
             "token_revoked")


async def test_types_are_strict(server: RunningServer, http: httpx.AsyncClient) -> None:
    rt = server.runtime
    assert (await rt.components["wallet"].grant("typ", 100, "g-typ", "root")).ok
    for count in ('"1"', "true", "1.0", "null"):
        body = f'{{"room":"stage","gift":"rose","count":{count},"tx":"t"}}'.encode()
        r = await http.post("/api/gifts", content=body, headers=_auth(rt.issuer, "typ"))
        _problem(r, 400, "missing_field" if count == "null" else "wrong_type")
    assert await _coins(rt, "typ") == 100


async def _raw_request(server: RunningServer, head: str, body: bytes) -> tuple[bytes, bool]:
    """Send a request's head and the first part of its body, never the rest; return the
    response head and whether the server then closed the connection."""
    host, port = server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        length = int(next(line.split(b":")[1] for line in response.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        closed = await asyncio.wait_for(reader.read(1), 60) == b""
        return response, closed
    finally:
        writer.close()


async def test_an_oversized_body_is_refused_before_it_is_buffered(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """A 64 MB body is answered 413 after at most one chunk: the rest is never sent here, so a
    server that waited for the whole body would never answer."""
    token = server.runtime.issuer.mint("star", "creator")
    declared = (f"POST /api/rooms/stage/goal HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {64 << 20}\r\n")
    head, closed = await _raw_request(server, declared, b'{"title":"')
    assert head.startswith(b"HTTP/1.1 413") and closed
    # Chunked: no length up front. The gate (server/edge/transport/gate.py) must know where each
    # request ends to bound the next head, so it refuses it (411) before reading any of it.
    chunked = (f"POST /api/rooms/stage/goal HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
               f"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    chunk = b'{"title":"' + b"x" * 40_000
    head, closed = await _raw_request(server, chunked, b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    assert head.startswith(b"HTTP/1.1 411") and closed
    # A route that reads no body refuses a huge declared one too.
    get = (f"GET /api/me/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
           f"Content-Length: {64 << 20}\r\n")
    head, closed = await _raw_request(server, get, b"")
    assert head.startswith(b"HTTP/1.1 413") and closed


def test_the_http_docs_list_every_refusal_code_under_its_status() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "ledger.md").read_text()
    errors = " ".join(text.split("**Errors.**", 1)[1].split("\n\n", 1)[0].split())
    for code, status in STATUS.items():
        at = errors.find(f"`{code}`")
        assert at >= 0, f"docs/ledger.md (HTTP API, Errors) lacks {code}"
        listed = re.findall(r"`(\d{3})`", errors[:at])
        assert listed and int(listed[-1]) == status, f"{code}: documented under {listed[-1:]}"
