"""No self-gifting: nobody may gift a room they own, on either path (a creator's coins would come
back to them as redeemable diamonds). Refused inside the spend script, before any debit."""

from __future__ import annotations

import httpx
import pytest

from protocol import Ack, ErrorReply, GiftEvent, SendGift
from server.auth import TokenIssuer
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import RunningServer

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes


async def test_a_creator_cannot_gift_their_own_room_on_either_path(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    wallet = rt.components["wallet"]
    await setup_room(rt, "stage", creator="star")
    await grant(rt, "star", 500)
    await grant(rt, "fan", 500)
    star_token = issuer.mint("star", "creator")
    star = await open_client(server.ws_url, star_token)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    watcher = await open_client(server.ws_url, issuer.mint("watcher", "viewer"))
    try:
        for client in (star, fan, watcher):
            await client.join("stage")

        await star.send(SendGift(id="ws1", room="stage", gift="rose", count=5, tx="self-ws"))
        refused = await star.reply("ws1")
        assert isinstance(refused, ErrorReply), refused
        assert (refused.code, refused.tx) == ("self_gift", "self-ws")

        async with httpx.AsyncClient(base_url=server.base_url) as http:
            r = await http.post(
                "/api/gifts", headers={"Authorization": f"Bearer {star_token}"},
                json={"room": "stage", "gift": "rose", "count": 5, "tx": "self-http"},
            )
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "self_gift"

        # Nothing debited, no idempotency record (the refusal is not a spent tx).
        assert (await wallet.state("star")).coins == 500
        for tx in ("self-ws", "self-http"):
            assert not await rt.redis.exists(rt.keys.tx("star", tx))

        # Another viewer's gift to that room still works, and is the room's first event:
        # nothing was published for the refused ones.
        await fan.send(SendGift(id="f1", room="stage", gift="rose", count=5, tx="fan-1"))
        assert isinstance(await fan.reply("f1"), Ack)
        events = await watcher.wait_events(1, "stage")
        assert [(e.sender, e.seq) for e in events if isinstance(e, GiftEvent)] == [("fan", 1)]
        assert (await wallet.state("fan")).coins == 495
        assert (await wallet.state("star")).coins == 500
    finally:
        for client in (star, fan, watcher):
            await client.close()
