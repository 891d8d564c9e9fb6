"""The page routes over plain HTTP: who gets the overlay, what the demo endpoints allow."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from server.auth import TokenIssuer
from server.config import Config
from tests.browser.support import watched_server
from tests.support.servers import RunningServer


async def get(server: RunningServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        return await client.get(path)


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_overlay_page_needs_a_valid_overlay_token(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    assert_problem(await get(server, "/overlay"), 401, "unauthorized")
    assert_problem(await get(server, "/overlay?token=not-a-jwt"), 401, "unauthorized")
    expired = issuer.mint("c1", "overlay", room="r1", ttl_s=-10)
    assert_problem(await get(server, f"/overlay?token={expired}"), 401, "token_expired")
    viewer = issuer.mint("v1", "viewer")
    assert_problem(await get(server, f"/overlay?token={viewer}"), 403, "forbidden")
    revoked = issuer.mint("c1", "overlay", room="r1")
    await issuer.revoke(revoked, server.runtime.redis)
    assert_problem(await get(server, f"/overlay?token={revoked}"), 401, "token_revoked")

    good = issuer.mint("c1", "overlay", room="r1")
    r = await get(server, f"/overlay?token={good}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    # The token is in the URL: it must not be cached or leak through Referer.
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert 'src="/static/overlay.js"' in r.text


async def test_test_mode_and_static_files_need_no_token(server: RunningServer) -> None:
    assert (await get(server, "/overlay?test=1")).status_code == 200
    js = await get(server, "/static/overlay.js")
    assert js.status_code == 200
    # Module scripts are refused by browsers unless served with a JavaScript MIME type.
    assert js.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert_problem(await get(server, "/static/no-such-file.js"), 404, "not_found")


async def test_demo_is_absent_unless_enabled(server: RunningServer) -> None:
    assert not server.config.demo
    assert_problem(await get(server, "/demo"), 404, "not_found")
    assert_problem(await get(server, "/demo/api/session"), 404, "not_found")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.post("/demo/api/token", json={"user": "demo-mira"})
    assert_problem(r, 404, "not_found")


@pytest.fixture
async def demo_server(config: Config, redis: object, pool: object) -> AsyncIterator[RunningServer]:
    async with watched_server(dataclasses.replace(config, demo=True, demo_bots=0)) as running:
        yield running


async def test_demo_mints_viewer_tokens_for_demo_viewers_only(demo_server: RunningServer) -> None:
    rt = demo_server.runtime
    async with httpx.AsyncClient(base_url=demo_server.base_url) as client:
        assert (await client.get("/demo")).status_code == 200
        session = (await client.get("/demo/api/session")).json()
        assert session["room"] == "demo"
        users = [v["user"] for v in session["viewers"]]
        assert len(users) >= 3
        overlay = rt.issuer.decode(session["overlay_url"].split("token=")[1].split("&")[0])
        assert (overlay.role.value, overlay.room) == ("overlay", "demo")

        r = await client.post("/demo/api/token", json={"user": users[0]})
        assert r.status_code == 200
        viewer = rt.issuer.decode(r.json()["token"])
        assert (viewer.user, viewer.role.value) == (users[0], "viewer")

        assert_problem(await client.post("/demo/api/token", json={"user": "admin"}), 403,
                       "forbidden")
        assert_problem(await client.post("/demo/api/token", json={}), 400, "missing_field")
        assert_problem(await client.post("/demo/api/token", content=b"{nope"), 400,
                       "malformed_frame")
        too_big = b"x" * (rt.config.http_max_body_bytes + 1)
        assert_problem(await client.post("/demo/api/token", content=too_big), 413,
                       "frame_too_large")
        # The same reader as the API's (server/web/body.py): the protocol's decoder rules.
        dup = f'{{"user":"{users[0]}","user":"admin"}}'.encode()
        assert_problem(await client.post("/demo/api/token", content=dup), 400, "malformed_frame")
        deep = b'{"user":' + b"[" * 2000 + b"]" * 2000 + b"}"
        assert_problem(await client.post("/demo/api/token", content=deep), 400,
                       "malformed_frame")
    # Seeding funded every demo viewer through the wallet.
    wallet = rt.components["wallet"]
    for user in users:
        assert await wallet.balance(user) > 0


async def test_root_is_a_landing_page_or_the_demo(server: RunningServer,
                                                  demo_server: RunningServer) -> None:
    r = await get(server, "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/overlay?test=1"' in r.text and 'href="/healthz"' in r.text
    r = await get(demo_server, "/")
    assert (r.status_code, r.headers["location"]) == (307, "/demo")


async def test_the_demo_guest_is_a_viewer_of_its_own_funded_once(
    demo_server: RunningServer, server: RunningServer
) -> None:
    rt = demo_server.runtime
    wallet = rt.components["wallet"]
    bots = {v.user for v in rt.components["demo"].viewers}
    async with httpx.AsyncClient(base_url=demo_server.base_url) as client:
        first = (await client.post("/demo/api/guest", json={})).json()
        assert first["user"].startswith("guest-") and first["user"] not in bots
        assert first["name"] == f"Guest {first['user'][-4:].upper()}"
        principal = await rt.issuer.verify(first["token"], rt.redis)
        assert (principal.user, principal.role.value, principal.name) == (
            first["user"], "viewer", first["name"])
        assert await wallet.balance(first["user"]) == 5_000
        # The page asks again with its stored id: the same guest, not funded twice.
        again = (await client.post("/demo/api/guest", json={"guest": first["user"]})).json()
        assert again["user"] == first["user"]
        assert await wallet.balance(first["user"]) == 5_000
        other = (await client.post("/demo/api/guest")).json()
        assert other["user"] != first["user"]
        # Nobody can pose as a bot (or anyone else) through it; nothing is created.
        for bad in ("demo-mira", "guest-XYZ", "guest-0123456789abc", 7):
            r = await client.post("/demo/api/guest", json={"guest": bad})
            assert_problem(r, 400, "wrong_type" if bad == 7 else "invalid_value")
        assert await wallet.balance("guest-XYZ") == 0
        assert_problem(await client.post("/demo/api/guest", json={"user": "x"}), 400,
                       "unknown_field")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        assert_problem(await client.post("/demo/api/guest", json={}), 404, "not_found")
