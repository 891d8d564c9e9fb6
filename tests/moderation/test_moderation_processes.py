"""A block on two real server processes sharing one Redis and Postgres: the blocked user's sessions
on both leave the room at once, their gifts are refused on both with nothing debited, their
rejoin is refused on both; others in the room are untouched."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from protocol import Ack, ErrorReply, Join, Leave, SendGift, ServerMessage, ViewerCount
from server.auth import TokenIssuer
from server.config import Config
from server.money import streams
from server.runtime import Runtime
from tests.hub.support import Client, open_client
from tests.support.servers import subprocess_server

pytestmark = pytest.mark.slow

ROOM = "arena"


async def _reply(client: Client, msg: Join | Leave | SendGift) -> ServerMessage:
    assert msg.id is not None
    await client.send(msg)
    return await client.reply(msg.id)


def _notice(msgs: list[ServerMessage]) -> bool:
    return any(isinstance(m, ErrorReply) and m.code == "blocked" and m.id is None
               and m.room == ROOM for m in msgs)


async def test_a_block_on_one_process_takes_effect_on_both(
    config: Config, runtime: Runtime, issuer: TokenIssuer
) -> None:
    async with subprocess_server(config) as a, subprocess_server(config) as b:
        await streams.go_live(runtime, ROOM, "creator1", "two processes")
        async with httpx.AsyncClient() as http:
            admin = {"Authorization": "Bearer " + issuer.mint("root", "admin")}
            for user in ("troll", "fan"):
                r = await http.post(a.base_url + "/api/admin/grant", headers=admin,
                                    json={"user": user, "coins": 100, "grant_id": f"g-{user}"})
                assert r.status_code == 200, r.text
            troll_token = issuer.mint("troll", "viewer")
            # The troll has a session on each process; a fan watches from each.
            troll_a, troll_b, fan_a, fan_b = await asyncio.gather(
                open_client(a.ws_url, troll_token), open_client(b.ws_url, troll_token),
                open_client(a.ws_url, issuer.mint("fan", "viewer")),
                open_client(b.ws_url, issuer.mint("fan", "viewer")),
            )
            clients = [troll_a, troll_b, fan_a, fan_b]
            try:
                await asyncio.gather(*(c.join(ROOM) for c in clients))
                assert isinstance(await _reply(troll_b, SendGift(
                    id="t0", room=ROOM, gift="rose", count=1, tx="t0")), Ack)
                await fan_b.wait(lambda ms: any(
                    isinstance(m, ViewerCount) and m.count == 4 for m in ms))

                # Blocked through process A's API, by the room's creator.
                r = await http.post(
                    a.base_url + f"/api/rooms/{ROOM}/blocks",
                    headers={"Authorization": "Bearer " + issuer.mint("creator1", "creator")},
                    json={"user": "troll", "reason": "spam"})
                assert r.status_code == 200, r.text
                await asyncio.gather(troll_a.wait(_notice), troll_b.wait(_notice))
                # Out of the room on both processes: leave says so, and the viewer count (shared
                # presence) drops to the two fans.
                for troll in (troll_a, troll_b):
                    left = await _reply(troll, Leave(id="l", room=ROOM))
                    assert isinstance(left, ErrorReply) and left.code == "not_joined"
                await fan_a.wait(lambda ms: any(
                    isinstance(m, ViewerCount) and m.count == 2 for m in ms))

                # Gifts refused on both processes (HTTP and socket paths), nothing debited.
                for srv, tx in ((a, "h1"), (b, "h2")):
                    r = await http.post(srv.base_url + "/api/gifts",
                                        headers={"Authorization": f"Bearer {troll_token}"},
                                        json={"room": ROOM, "gift": "rose", "count": 1, "tx": tx})
                    assert r.status_code == 403 and r.json()["code"] == "blocked", r.text
                # Rejoin refused on both processes.
                for troll in (troll_a, troll_b):
                    refused = await _reply(troll, Join(id="j", room=ROOM))
                    assert isinstance(refused, ErrorReply) and refused.code == "blocked"
                # Concurrent gift attempts from both processes at once: every one refused.
                results = await asyncio.gather(*(
                    http.post(srv.base_url + "/api/gifts",
                              headers={"Authorization": f"Bearer {troll_token}"},
                              json={"room": ROOM, "gift": "rose", "count": 1, "tx": f"c{i}"})
                    for i, srv in enumerate([a, b] * 10)))
                assert {(r.status_code, r.json()["code"]) for r in results} == {(403, "blocked")}
                balance = await http.get(a.base_url + "/api/me/balance",
                                         headers={"Authorization": f"Bearer {troll_token}"})
                assert balance.json()["coins"] == 99
                # The audit log, read through the other process, shows who blocked whom, why.
                r = await http.get(
                    b.base_url + f"/api/rooms/{ROOM}/audit",
                    headers={"Authorization": "Bearer " + issuer.mint("creator1", "creator")})
                assert r.status_code == 200, r.text
                assert [(e["actor"], e["target"], e["action"], e["reason"])
                        for e in r.json()["items"]] == [("creator1", "troll", "block", "spam")]
                # The fans keep gifting and watching on both.
                assert isinstance(await _reply(fan_a, SendGift(
                    id="f0", room=ROOM, gift="rose", count=1, tx="f0")), Ack)
                events = await fan_b.wait_events(2, ROOM)
                assert [e.sender for e in events] == ["troll", "fan"]
            finally:
                await asyncio.gather(*(c.close() for c in clients))
