"""The dashboard's own routes: the room overview, earnings per stream (summed from the ledger,
recorded as streams start and end), and the development sign-in."""

from __future__ import annotations

import asyncio

import httpx

from server.auth import TokenIssuer
from server.config import Config
from tests.conftest import with_config
from tests.creator.support import auth
from tests.hub.support import grant
from tests.support.servers import RunningServer, inprocess_server

ROOM = "den"




async def gift(http: httpx.AsyncClient, issuer: TokenIssuer, tx: str, count: int) -> None:
    r = await http.post("/api/gifts", headers=auth(issuer, "fan", "viewer"),
                        json={"room": ROOM, "gift": "rose", "count": count, "tx": tx})
    assert r.status_code == 200, r.text


async def test_earnings_per_stream_add_up_to_the_wallets_diamonds(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    me = auth(issuer)
    await grant(rt, "fan", 10_000)
    assert (await http.post(f"/api/rooms/{ROOM}/live", headers=me, json={})).status_code == 200
    # A retried go-live of a live room keeps its stream.
    assert (await http.post(f"/api/rooms/{ROOM}/live", headers=me, json={})).status_code == 200
    await gift(http, issuer, "t1", 100)
    assert (await http.post(f"/api/rooms/{ROOM}/end", headers=me)).status_code == 200
    assert (await http.post(f"/api/rooms/{ROOM}/live", headers=me, json={})).status_code == 200
    await gift(http, issuer, "t2", 300)
    await rt.components["flusher"].wait_caught_up()
    await asyncio.gather(*rt.components["realtime"].stream_records)  # recorded in the background
    r = await http.get("/api/me/streams", headers=me)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["room"], i["gifts"], i["ended_at"] is None) for i in items] == [
        (ROOM, 1, True), (ROOM, 1, False)]
    wallet = (await http.get("/api/me/earnings", headers=me)).json()["diamonds"]
    assert items[0]["diamonds"] > items[1]["diamonds"] > 0
    assert items[0]["diamonds"] + items[1]["diamonds"] == wallet
    # The dashboard's redemption history reads one kind of the creator's transactions.
    credits = (await http.get("/api/me/transactions?kind=credit", headers=me)).json()["items"]
    assert [c["kind"] for c in credits] == ["credit", "credit"]
    assert (await http.get("/api/me/transactions?kind=redeem", headers=me)).json()["items"] == []
    r = await http.get("/api/me/transactions?kind=bogus", headers=me)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_value")
    r = await http.get(f"/api/me/streams?room={ROOM}", headers=me)
    assert r.json()["items"] == items
    assert (await http.get("/api/me/streams?room=other", headers=me)).json()["items"] == []
    r = await http.get("/api/me/streams?room=bad%20room", headers=me)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_value")
    r = await http.get("/api/me/streams", headers=auth(issuer, "fan", "viewer"))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


async def test_the_room_overview_shows_stream_and_goal_to_its_creator_only(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    me = auth(issuer)
    r = await http.get(f"/api/rooms/{ROOM}", headers=me)
    assert (r.status_code, r.json()["code"]) == (404, "room_not_found")
    await http.post(f"/api/rooms/{ROOM}/live", headers=me, json={"title": "hello"})
    r = await http.get(f"/api/rooms/{ROOM}", headers=me)
    body = r.json()
    assert (body["live"], body["title"], body["goal"]) == (True, "hello", None)
    r = await http.post(f"/api/rooms/{ROOM}/goal", headers=me, json={"title": "mic",
                                                                     "target": 500})
    assert r.status_code == 200, r.text
    goal = (await http.get(f"/api/rooms/{ROOM}", headers=me)).json()["goal"]
    assert goal == {"title": "mic", "target": 500, "progress": 0}
    r = await http.get(f"/api/rooms/{ROOM}", headers=auth(issuer, "creator2"))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


async def test_dev_sign_in_mints_a_creator_token_in_development_only(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, config: Config
) -> None:
    r = await http.post("/creator/api/dev-token", json={"user": "streamer1", "name": "Sam"})
    assert r.status_code == 200, r.text
    principal = issuer.decode(r.json()["token"])
    assert (principal.user, principal.role.value, principal.name) == ("streamer1", "creator",
                                                                       "Sam")
    r = await http.post("/creator/api/dev-token", json={"user": "bad user"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_value")
    page = await http.get("/creator")
    assert page.status_code == 200 and "gw-dashboard" in page.text
    prod = with_config(config, env="production", jwt_secret="x" * 40,
                       sandbox_receipt_secret="y" * 40)
    async with inprocess_server(prod) as other, httpx.AsyncClient(
            base_url=other.base_url) as client:
        r = await client.post("/creator/api/dev-token", json={"user": "streamer1"})
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
