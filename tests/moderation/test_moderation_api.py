"""Room moderation end to end on one real server: the HTTP API, the gift and join refusals, the
blocked session leaving the room, the audit log, and the block list rebuilt after Redis loses it.
(Two server processes: test_moderation_processes.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from protocol import Ack, ErrorCode, ErrorReply, Join, Leave, SendGift, ServerMessage
from server.auth import TokenIssuer
from server.runtime import Runtime
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer

ROOM = "stage"
CREATOR = "creator1"


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client


@pytest.fixture
async def room(server: RunningServer) -> str:
    await setup_room(server.runtime, ROOM, CREATOR)
    return ROOM


def bearer(issuer: TokenIssuer, user: str, role: str = "viewer") -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(user, role)}


def creator(issuer: TokenIssuer) -> dict[str, str]:
    return bearer(issuer, CREATOR, "creator")


def blocked_notice(room: str) -> Any:
    def find(msgs: list[ServerMessage]) -> ErrorReply | None:
        for m in msgs:
            if isinstance(m, ErrorReply) and m.code == "blocked" and m.id is None:
                assert m.room == room
                return m
        return None

    return find


async def gift(client: Client, room: str, tx: str) -> ServerMessage:
    await client.send(SendGift(id=tx, room=room, gift="rose", count=1, tx=tx))
    return await client.reply(tx)


async def audit(http: httpx.AsyncClient, issuer: TokenIssuer, room: str) -> list[tuple[str, ...]]:
    r = await http.get(f"/api/rooms/{room}/audit", headers=creator(issuer))
    assert r.status_code == 200, r.text
    return [(e["actor"], e["target"], e["action"], e["reason"]) for e in r.json()["items"]]


async def test_a_blocked_viewer_leaves_the_room_cannot_gift_or_rejoin_until_unblocked(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, room: str
) -> None:
    rt: Runtime = server.runtime
    hub = rt.components["realtime"].hub
    await grant(rt, "troll", 100)
    await grant(rt, "fan", 100)
    troll = await open_client(server.ws_url, issuer.mint("troll", "viewer"))
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await troll.join(room)
        await fan.join(room)
        assert isinstance(await gift(troll, room, "t0"), Ack)
        assert hub.rooms[room] == 2

        r = await http.post(f"/api/rooms/{room}/blocks", headers=creator(issuer),
                            json={"user": "troll", "reason": "spam"})
        assert r.status_code == 200, r.text
        assert r.json() == {"room": room, "user": "troll", "blocked": True, "created": True}
        await troll.wait(blocked_notice(room))
        # Out of the hub's room before the notice was queued; the fan stays.
        assert hub.rooms[room] == 1
        await troll.send(Leave(id="l1", room=room))
        left = await troll.reply("l1")
        assert isinstance(left, ErrorReply) and left.code == "not_joined"

        # Gifts refused before any debit: on the socket (it must rejoin first: refused) and HTTP.
        await troll.send(Join(id="j1", room=room))
        refused = await troll.reply("j1")
        assert isinstance(refused, ErrorReply) and refused.code == ErrorCode.BLOCKED
        assert refused.room == room
        r = await http.post("/api/gifts", headers=bearer(issuer, "troll"),
                            json={"room": room, "gift": "rose", "count": 1, "tx": "h1"})
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "blocked"
        wallet = rt.components["wallet"]
        assert await wallet.balance("troll") == 99  # only the gift before the block
        # The fan is untouched: still in the room and gifting.
        assert isinstance(await gift(fan, room, "f0"), Ack)

        listed = await http.get(f"/api/rooms/{room}/blocks", headers=creator(issuer))
        assert [(b["user"], b["reason"], b["by"]) for b in listed.json()["blocks"]] == [
            ("troll", "spam", CREATOR)]

        r = await http.delete(f"/api/rooms/{room}/blocks/troll", headers=creator(issuer))
        assert r.status_code == 200, r.text
        await troll.join(room)
        assert isinstance(await gift(troll, room, "t1"), Ack)
        assert await wallet.balance("troll") == 98
        r = await http.delete(f"/api/rooms/{room}/blocks/troll", headers=creator(issuer))
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    finally:
        await troll.close()
        await fan.close()
    assert await audit(http, issuer, room) == [
        (CREATOR, "troll", "unblock", ""), (CREATOR, "troll", "block", "spam")]


async def test_a_moderator_blocks_but_cannot_appoint_and_others_get_403(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, room: str
) -> None:
    base = f"/api/rooms/{room}"
    mod, stranger = bearer(issuer, "mod1"), bearer(issuer, "nobody")
    # Before the appointment mod1 is nobody here.
    r = await http.post(f"{base}/blocks", headers=mod, json={"user": "troll", "reason": "x"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await http.post(f"{base}/moderators", headers=creator(issuer), json={"user": "mod1"})
    assert r.status_code == 200 and r.json()["created"] is True, r.text
    r = await http.post(f"{base}/moderators", headers=creator(issuer), json={"user": "mod1"})
    assert r.status_code == 200 and r.json()["created"] is False  # idempotent, audited once

    r = await http.post(f"{base}/blocks", headers=mod, json={"user": "troll", "reason": "abuse"})
    assert r.status_code == 200, r.text
    assert (await http.get(f"{base}/blocks", headers=mod)).status_code == 200
    assert (await http.get(f"{base}/moderators", headers=mod)).json()["moderators"][0]["user"] \
        == "mod1"
    for method, path, body in [
        ("POST", f"{base}/moderators", {"user": "mod2"}),
        ("DELETE", f"{base}/moderators/mod1", None),
        ("GET", f"{base}/audit", None),
    ]:
        r = await http.request(method, path, headers=mod, json=body)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
    # Anyone else: every route is 403 problem+json.
    for method, path, body in [
        ("GET", f"{base}/blocks", None),
        ("POST", f"{base}/blocks", {"user": "fan", "reason": "x"}),
        ("DELETE", f"{base}/blocks/troll", None),
        ("GET", f"{base}/moderators", None),
        ("POST", f"{base}/moderators", {"user": "nobody"}),
        ("DELETE", f"{base}/moderators/mod1", None),
        ("GET", f"{base}/audit", None),
    ]:
        r = await http.request(method, path, headers=stranger, json=body)
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "forbidden"
    # Another creator's token is nobody here either; an overlay of the room neither.
    other = bearer(issuer, "creator2", "creator")
    assert (await http.get(f"{base}/blocks", headers=other)).status_code == 403
    overlay = {"Authorization": "Bearer " + issuer.mint("mod1", "overlay", room=room)}
    assert (await http.get(f"{base}/blocks", headers=overlay)).status_code == 403
    # A moderator may not block the creator or another moderator; the creator may.
    await http.post(f"{base}/moderators", headers=creator(issuer), json={"user": "mod2"})
    r = await http.post(f"{base}/blocks", headers=mod, json={"user": "mod2", "reason": "x"})
    assert r.status_code == 403
    r = await http.post(f"{base}/blocks", headers=mod, json={"user": CREATOR, "reason": "x"})
    assert r.status_code == 403
    r = await http.delete(f"{base}/moderators/mod1", headers=creator(issuer))
    assert r.status_code == 200, r.text
    r = await http.delete(f"{base}/moderators/mod1", headers=creator(issuer))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    # Dismissed: mod1 can no longer unblock.
    r = await http.delete(f"{base}/blocks/troll", headers=mod)
    assert r.status_code == 403

    assert await audit(http, issuer, room) == [
        (CREATOR, "mod1", "moderator_remove", ""),
        (CREATOR, "mod2", "moderator_add", ""),
        ("mod1", "troll", "block", "abuse"),
        (CREATOR, "mod1", "moderator_add", ""),
    ]
    page = await http.get(f"{base}/audit?limit=1&before=3", headers=creator(issuer))
    assert [e["action"] for e in page.json()["items"]] == ["block"]


async def test_bad_requests_are_refused_with_a_problem_and_change_nothing(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, room: str
) -> None:
    base = f"/api/rooms/{room}"
    c = creator(issuer)
    for body, code in [
        ({"user": "troll"}, "missing_field"),
        ({"user": "troll", "reason": ""}, "invalid_value"),
        ({"user": "troll", "reason": "   "}, "invalid_value"),
        ({"user": "", "reason": "x"}, "invalid_value"),
        ({"user": "u" * 129, "reason": "x"}, "too_long"),
        ({"user": "troll", "reason": "r" * 501}, "too_long"),
        ({"user": 7, "reason": "x"}, "wrong_type"),
        ({"user": "troll", "reason": "x", "ban": True}, "unknown_field"),
    ]:
        r = await http.post(f"{base}/blocks", headers=c, json=body)
        assert r.status_code == 400 and r.json()["code"] == code, (body, r.text)
    r = await http.post(f"{base}/blocks", headers=c, content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "malformed_frame"
    r = await http.post(f"{base}/moderators", headers=c, json={"user": CREATOR})
    assert r.status_code == 400 and r.json()["code"] == "invalid_value"
    r = await http.post(f"{base}/blocks", headers=c, json={"user": CREATOR, "reason": "x"})
    assert r.status_code == 403
    r = await http.post("/api/rooms/nowhere/blocks", headers=c, json={"user": "t", "reason": "x"})
    assert r.status_code == 404 and r.json()["code"] == "room_not_found"
    r = await http.post(f"{base}/blocks", json={"user": "troll", "reason": "x"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = await http.get(f"{base}/audit?limit=0", headers=c)
    assert r.status_code == 400 and r.json()["code"] == "out_of_range"
    assert (await http.get(f"{base}/blocks", headers=c)).json()["blocks"] == []
    assert (await http.get(f"{base}/moderators", headers=c)).json()["moderators"] == []
    assert await audit(http, issuer, room) == []


async def test_the_block_list_survives_losing_its_redis_copy(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer, room: str
) -> None:
    rt: Runtime = server.runtime
    await grant(rt, "troll", 100)
    r = await http.post(f"/api/rooms/{room}/blocks", headers=creator(issuer),
                        json={"user": "troll", "reason": "spam"})
    assert r.status_code == 200
    wallet = rt.components["wallet"]

    async def lose_redis_copy() -> None:
        # What a Redis data loss does to it: every shard's copy gone, Postgres untouched.
        await rt.redis.delete(*(rt.keys.blocks(s) for s in range(rt.keys.wallet_shards)))

    await lose_redis_copy()
    r = await http.post("/api/gifts", headers=bearer(issuer, "troll"),
                        json={"room": room, "gift": "rose", "count": 1, "tx": "g1"})
    assert r.status_code == 403 and r.json()["code"] == "blocked", r.text
    assert await wallet.balance("troll") == 100
    assert await rt.redis.hexists(rt.keys.blocks(rt.keys.shard_of("troll")), "troll") is False
    assert await rt.redis.hexists(rt.keys.blocks(rt.keys.shard_of("troll")), f"{room} troll")

    await lose_redis_copy()
    troll = await open_client(server.ws_url, issuer.mint("troll", "viewer"))
    try:
        await troll.send(Join(id="j", room=room))
        refused = await troll.reply("j")
        assert isinstance(refused, ErrorReply) and refused.code == "blocked"
    finally:
        await troll.close()
    listed = await http.get(f"/api/rooms/{room}/blocks", headers=creator(issuer))
    assert [b["user"] for b in listed.json()["blocks"]] == ["troll"]

    # Unblocking with the copy lost: the rebuilt copy does not bring the block back.
    await lose_redis_copy()
    assert (await http.delete(f"/api/rooms/{room}/blocks/troll",
                              headers=creator(issuer))).status_code == 200
    r = await http.post("/api/gifts", headers=bearer(issuer, "troll"),
                        json={"room": room, "gift": "rose", "count": 1, "tx": "g2"})
    assert r.status_code == 200, r.text
    assert await wallet.balance("troll") == 99


async def test_a_token_with_a_bad_display_name_is_refused_at_hello_and_over_http(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    import jwt
    from websockets.asyncio.client import connect

    from protocol import SUBPROTOCOL_JSON, Hello, JsonCodec
    from server.auth import ALGORITHM, ISSUER

    token = jwt.encode({"iss": ISSUER, "sub": "u1", "role": "viewer", "name": "evil\u202egpj.exe",
                        "iat": 1, "exp": 4_000_000_000, "jti": "j1"},
                       server.config.jwt_secret, algorithm=ALGORITHM)
    codec = JsonCodec()
    async with connect(server.ws_url, subprotocols=[SUBPROTOCOL_JSON]) as ws:
        await ws.send(codec.encode_client(Hello(id="h", v=1, client="t", token=token)))
        (reply,) = codec.decode_server(await ws.recv())
        assert isinstance(reply, ErrorReply) and reply.code == "invalid_display_name"
        await ws.wait_closed()
        assert ws.close_code == 4001
    r = await http.get("/api/me/balance", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_display_name"


async def test_a_block_whose_control_message_was_lost_is_applied_after_a_resubscription(
    server: RunningServer, issuer: TokenIssuer, room: str
) -> None:
    rt: Runtime = server.runtime
    realtime = rt.components["realtime"]
    await grant(rt, "troll", 100)
    troll = await open_client(server.ws_url, issuer.mint("troll", "viewer"))
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await troll.join(room)
        await fan.join(room)
        # The block reached Postgres and the gate, but its control message was lost to pub/sub
        # (published while this process's subscriber was reconnecting): nothing told the session.
        await rt.pool.execute(
            "INSERT INTO room_blocks (room, user_id, reason, blocked_by) VALUES ($1, $2, $3, $4)",
            room, "troll", "spam", CREATOR)
        await rt.components["moderation"].gate.add(room, "troll")
        assert realtime.hub.rooms[room] == 2
        # Still in the room as far as its session knows, so its socket gift reaches spend.lua,
        # which refuses it in the step that would have debited: nothing spent.
        refused = await gift(troll, room, "t-late")
        assert isinstance(refused, ErrorReply) and refused.code == "blocked", refused
        assert await rt.components["wallet"].balance("troll") == 100
        realtime.broker.on_resubscribed()  # what the broker calls once re-subscribed
        await troll.wait(blocked_notice(room))
        assert realtime.hub.rooms[room] == 1
        assert not _notices(fan)
    finally:
        await troll.close()
        await fan.close()


def _notices(client: Client) -> list[ServerMessage]:
    return [m for m in client.messages if isinstance(m, ErrorReply) and m.code == "blocked"]
