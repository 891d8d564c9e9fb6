"""The HTTP API end to end on a real server (S1, S2): tokens, ownership, codes, no side effects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.auth import TokenIssuer
from server.money.flusher import Flusher
from server.money.payments import sign_sandbox_receipt
from server.runtime import Runtime
from tests.support.servers import RunningServer


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    def __init__(self, http: httpx.AsyncClient, issuer: TokenIssuer, rt: Runtime) -> None:
        self.http, self.issuer, self.rt = http, issuer, rt
        self.admin = issuer.mint("root", "admin")

    def token(self, user: str, role: str = "viewer", **kw: Any) -> str:
        return self.issuer.mint(user, role, **kw)

    async def post(self, path: str, token: str | None, body: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers=bearer(token) if token else {})

    async def get(self, path: str, token: str) -> httpx.Response:
        return await self.http.get(path, headers=bearer(token))

    async def grant(self, user: str, coins: int, grant_id: str = "g1") -> None:
        r = await self.post("/api/admin/grant", self.admin,
                            {"user": user, "coins": coins, "grant_id": grant_id})
        assert r.status_code == 200, r.text

    async def coins(self, user: str) -> int:
        state = await self.rt.components["wallet"].state(user)
        return int(state.coins)

    async def ledger_rows(self) -> int:
        flusher: Flusher = self.rt.components["flusher"]
        await flusher.wait_caught_up()
        return int(await self.rt.pool.fetchval("SELECT count(*) FROM ledger_tx"))


@pytest.fixture
async def api(http: httpx.AsyncClient, server: RunningServer) -> Api:
    rt = server.runtime
    a = Api(http, rt.issuer, rt)
    r = await a.post("/api/rooms/stage/live", a.token("star", "creator"), {"title": "hello"})
    assert r.status_code == 200, r.text
    return a


def gift(tx: str, **kw: Any) -> dict[str, Any]:
    return {"room": "stage", "gift": "rose", "count": 1, "tx": tx, **kw}


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_catalog_lists_gifts_and_packages(api: Api) -> None:
    r = await api.http.get("/api/catalog")
    body = r.json()
    gifts = {g["id"]: g for g in body["gifts"]}
    assert gifts["rose"]["coins"] == 1 and gifts["rose"]["streakable"]
    assert gifts["universe"]["coins"] == 44999 and not gifts["universe"]["streakable"]
    assert all(not g["streakable"] for g in gifts.values() if g["coins"] > 100)
    assert {p["id"] for p in body["packages"]} >= {"coins_70", "coins_7000"}


async def test_a_viewer_spends_only_their_own_coins(api: Api) -> None:
    await api.grant("alice", 100, "ga")
    await api.grant("bob", 100, "gb")
    before = await api.ledger_rows()
    alice = api.token("alice")
    r = await api.post("/api/gifts", alice, gift("t1", user="bob"))
    assert_problem(r, 400, "unknown_field")
    history = api.rt.keys.room_history("stage")
    events_before = await api.rt.redis.xlen(history)
    r = await api.post("/api/gifts", alice, gift("t1"))
    assert r.status_code == 200 and r.json()["balance"] == 99
    again = await api.post("/api/gifts", alice, gift("t1"))
    assert again.json()["duplicate"] is True and again.json()["balance"] == 99
    assert await api.rt.redis.xlen(history) == events_before + 1  # the room saw it, once
    assert (await api.coins("alice"), await api.coins("bob")) == (99, 100)
    r = await api.get("/api/me/balance", api.token("bob"))
    assert r.json()["coins"] == 100
    assert await api.ledger_rows() == before + 2  # the gift and its credit


async def test_overlay_tokens_spend_nothing(api: Api) -> None:
    await api.grant("ov", 100)
    overlay = api.token("ov", "overlay", room="stage")
    assert_problem(await api.post("/api/gifts", overlay, gift("o1")), 403, "forbidden")
    receipt = sign_sandbox_receipt(api.rt.config.sandbox_receipt_secret, "ov", "coins_70")
    r = await api.post("/api/purchases", overlay, {"package": "coins_70", "receipt": receipt})
    assert_problem(r, 403, "forbidden")
    assert await api.coins("ov") == 100


async def test_expired_revoked_forged_and_missing_tokens_are_refused(api: Api) -> None:
    await api.grant("eve", 100)
    expired = api.issuer.mint("eve", "viewer", ttl_s=-60)
    forged = TokenIssuer("another-secret-entirely-32-bytes!", api.rt.keys).mint("eve", "admin")
    revoked = api.token("eve")
    r = await api.post("/api/tokens/revoke", revoked, {})
    assert r.status_code == 200, r.text
    for token, code in ((expired, "token_expired"), (revoked, "token_revoked"),
                        (forged, "unauthorized"), (None, "unauthorized"),
                        ("not.a.jwt", "unauthorized")):
        assert_problem(await api.post("/api/gifts", token, gift("x")), 401, code)
    assert_problem(await api.post("/api/admin/grant", forged,
                                  {"user": "eve", "coins": 5, "grant_id": "f"}), 401,
                   "unauthorized")
    assert await api.coins("eve") == 100
    # Only an admin revokes someone else's token.
    other = api.token("frank")
    r = await api.post("/api/tokens/revoke", api.token("eve"), {"token": other})
    assert_problem(r, 403, "forbidden")
    assert (await api.post("/api/tokens/revoke", api.admin, {"token": other})).status_code == 200
    assert_problem(await api.get("/api/me/balance", other), 401, "token_revoked")
    assert_problem(await api.get("/api/me/earnings", other), 401, "token_revoked")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (gift("b", count=0), 400, "out_of_range"),
        (gift("b", count=-3), 400, "out_of_range"),
        (gift("b", count=1001), 400, "out_of_range"),
        (gift("b", count=10**30), 400, "out_of_range"),
        (gift("b", count="5"), 400, "wrong_type"),
        (gift("b", count=1.5), 400, "wrong_type"),
        (gift("b", count=True), 400, "wrong_type"),
        (gift("b", gift="caviar"), 400, "unknown_gift"),
        (gift("b", room="nowhere"), 404, "room_not_found"),
        ({**gift("b"), "tx": "a b"}, 400, "invalid_value"),
        (gift("b", gift="lion"), 409, "insufficient_funds"),
        ({"room": "stage", "gift": "rose", "count": 1}, 400, "missing_field"),
        ([1, 2], 400, "invalid_message"),
    ],
)
async def test_bad_gifts_are_refused_with_their_code_and_change_nothing(
    api: Api, body: Any, status: int, code: str
) -> None:
    await api.grant("gina", 100)
    before = await api.ledger_rows()
    r = await api.post("/api/gifts", api.token("gina"), body)
    assert_problem(r, status, code)
    assert await api.coins("gina") == 100
    assert await api.ledger_rows() == before


async def test_an_ended_room_refuses_gifts_and_only_its_creator_ends_it(api: Api) -> None:
    await api.grant("hal", 100)
    assert_problem(await api.post("/api/rooms/stage/end", api.token("rival", "creator"), None),
                   403, "forbidden")
    assert_problem(await api.post("/api/rooms/stage/live", api.token("rival", "creator"), {}),
                   403, "forbidden")
    assert_problem(await api.post("/api/rooms/mine/live", api.token("hal"), {}), 403, "forbidden")
    r = await api.post("/api/rooms/stage/end", api.token("star", "creator"), None)
    assert r.status_code == 200 and r.json()["live"] is False
    before = await api.ledger_rows()
    assert_problem(await api.post("/api/gifts", api.token("hal"), gift("e1")), 409, "room_ended")
    assert await api.coins("hal") == 100
    assert await api.ledger_rows() == before


async def test_purchases_are_idempotent_by_receipt_and_verify_the_signature(api: Api) -> None:
    secret = api.rt.config.sandbox_receipt_secret
    ivy = api.token("ivy")
    receipt = sign_sandbox_receipt(secret, "ivy", "coins_350", "rcpt-1")
    body = {"package": "coins_350", "receipt": receipt}
    first = await api.post("/api/purchases", ivy, body)
    again = await api.post("/api/purchases", ivy, body)
    assert first.status_code == again.status_code == 200
    assert (first.json()["balance"], again.json()["balance"]) == (350, 350)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    forged = sign_sandbox_receipt("wrong-secret", "ivy", "coins_350", "rcpt-2")
    assert_problem(await api.post("/api/purchases", ivy, {"package": "coins_350",
                                                          "receipt": forged}), 400,
                   "invalid_value")
    tampered = receipt[:-4] + ("0000" if not receipt.endswith("0000") else "1111")
    assert_problem(await api.post("/api/purchases", ivy, {"package": "coins_350",
                                                          "receipt": tampered}), 400,
                   "invalid_value")
    assert_problem(await api.post("/api/purchases", ivy, {"package": "coins_7000",
                                                          "receipt": receipt}), 400,
                   "invalid_value")
    theirs = sign_sandbox_receipt(secret, "jack", "coins_70", "rcpt-3")
    assert_problem(await api.post("/api/purchases", ivy, {"package": "coins_70",
                                                          "receipt": theirs}), 403, "forbidden")
    assert await api.coins("ivy") == 350


async def test_a_chargeback_that_the_wallet_cannot_cover_freezes_it(api: Api) -> None:
    secret = api.rt.config.sandbox_receipt_secret
    kim = api.token("kim")
    receipt = sign_sandbox_receipt(secret, "kim", "coins_350", "rcpt-k")
    assert (await api.post("/api/purchases", kim, {"package": "coins_350",
                                                   "receipt": receipt})).status_code == 200
    assert (await api.post("/api/gifts", kim, gift("k1", gift="corgi"))).status_code == 200
    await api.ledger_rows()  # the purchase is in the ledger
    assert_problem(await api.post("/api/admin/reverse", kim, {"receipt": "rcpt-k"}), 403,
                   "forbidden")
    r = await api.post("/api/admin/reverse", api.admin, {"receipt": "rcpt-k"})
    assert r.status_code == 200, r.text
    assert (r.json()["taken"], r.json()["shortfall"], r.json()["frozen"]) == (51, 299, True)
    again = await api.post("/api/admin/reverse", api.admin, {"receipt": "rcpt-k"})
    assert again.json()["duplicate"] is True
    assert await api.coins("kim") == 0
    await api.grant("kim", 1000, "after")
    assert_problem(await api.post("/api/gifts", kim, gift("k2")), 409, "wallet_frozen")
    assert_problem(await api.post("/api/admin/unfreeze", kim, {"user": "kim"}), 403, "forbidden")
    r = await api.post("/api/admin/unfreeze", api.admin, {"user": "kim"})
    assert r.status_code == 200, r.text
    assert (await api.post("/api/gifts", kim, gift("k2"))).status_code == 200
    assert_problem(await api.post("/api/admin/reverse", api.admin, {"tx": "g:kim:k1"}), 404,
                   "not_found")


async def test_admin_routes_need_the_admin_role(api: Api) -> None:
    body = {"user": "lou", "coins": 10, "grant_id": "x"}
    for role in ("viewer", "creator"):
        assert_problem(await api.post("/api/admin/grant", api.token("lou", role), body), 403,
                       "forbidden")
    assert await api.coins("lou") == 0
    r1 = await api.post("/api/admin/grant", api.admin, body)
    r2 = await api.post("/api/admin/grant", api.admin, body)
    assert (r1.json()["balance"], r2.json()["balance"], r2.json()["duplicate"]) == (10, 10, True)
    assert_problem(await api.post("/api/admin/grant", api.admin, {**body, "coins": 11}), 409,
                   "tx_conflict")
    assert_problem(await api.post("/api/admin/grant", api.admin, {**body, "coins": -5}), 400,
                   "out_of_range")


async def test_creators_see_earnings_and_redeem_above_the_minimum(api: Api) -> None:
    await api.grant("whale", 5000)
    r = await api.post("/api/gifts", api.token("whale"), gift("w1", gift="money_gun", count=3))
    assert r.status_code == 200
    star = api.token("star", "creator")
    assert (await api.get("/api/me/earnings", star)).json()["diamonds"] == 1500
    assert_problem(await api.post("/api/me/redeem", star, {"diamonds": 999, "request_id": "r0"}),
                   400, "out_of_range")
    assert_problem(await api.post("/api/me/redeem", star, {"diamonds": 2000, "request_id": "r1"}),
                   409, "insufficient_funds")
    assert_problem(await api.post("/api/me/redeem", api.token("whale"),
                                  {"diamonds": 1000, "request_id": "r2"}), 403, "forbidden")
    r = await api.post("/api/me/redeem", star, {"diamonds": 1200, "request_id": "r3"})
    assert r.status_code == 200 and r.json()["diamonds"] == 300
    assert (await api.get("/api/me/earnings", star)).json()["diamonds"] == 300


async def test_my_transactions_page_newest_first(api: Api) -> None:
    await api.grant("mo", 100)
    mo = api.token("mo")
    for i in range(5):
        assert (await api.post("/api/gifts", mo, gift(f"m{i}"))).status_code == 200
    await api.ledger_rows()
    seen: list[dict[str, Any]] = []
    url = "/api/me/transactions?limit=2"
    while True:
        page = (await api.get(url, mo)).json()
        seen += page["items"]
        if page["next_before"] is None:
            break
        url = f"/api/me/transactions?limit=2&before={page['next_before']}"
    assert [t["ref"] for t in seen] == ["m4", "m3", "m2", "m1", "m0", "g1"]
    assert_problem(await api.get("/api/me/transactions?limit=0", mo), 400, "out_of_range")
    assert_problem(await api.get("/api/me/transactions?limit=x", mo), 400, "wrong_type")


async def test_a_viewer_caps_their_own_daily_spending(api: Api) -> None:
    await api.grant("nia", 100)
    nia = api.token("nia")
    r = await api.post("/api/me/daily-limit", nia, {"coins": 2})
    assert r.status_code == 200 and r.json()["daily_limit"] == 2
    assert (await api.get("/api/me/balance", nia)).json()["daily_limit"] == 2
    assert_problem(await api.post("/api/gifts", nia, gift("n1", count=3)), 409,
                   "daily_limit_exceeded")
    assert (await api.post("/api/gifts", nia, gift("n2", count=2))).status_code == 200
    assert_problem(await api.post("/api/me/daily-limit", nia, {"coins": -1}), 400,
                   "out_of_range")
    overlay = api.token("nia", "overlay", room="stage")
    assert_problem(await api.post("/api/me/daily-limit", overlay, {"coins": 0}), 403,
                   "forbidden")
    assert await api.coins("nia") == 98


async def test_sandbox_receipts_are_served_in_demo_mode_only(api: Api) -> None:
    r = await api.post("/api/sandbox/receipts", api.token("oli"), {"package": "coins_70"})
    assert_problem(r, 404, "not_found")


async def test_an_oversized_body_is_refused_unread(api: Api) -> None:
    await api.grant("pat", 10)
    body = b'{"room": "stage", "gift": "rose", "count": 1, "tx": "' + b"x" * 100_000 + b'"}'
    headers = {**bearer(api.token("pat")), "content-type": "application/json"}
    r = await api.http.post("/api/gifts", content=body, headers=headers)
    assert_problem(r, 413, "frame_too_large")
    r = await api.http.post("/api/gifts", content=b"{not json",
                            headers=bearer(api.token("pat")))
    assert_problem(r, 400, "malformed_frame")
    assert await api.coins("pat") == 10
