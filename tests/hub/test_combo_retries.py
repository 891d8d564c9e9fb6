"""Combo clicks are idempotent and bound to their first click's room and gift (issue 11, 3-4):
a retried click of a settled combo gets its first ack (`duplicate`), one debit; a click naming
another gift or room is refused before any debit; the settled event counts every coin charged.
The same over `POST /api/gifts`."""

from __future__ import annotations

import asyncio

import httpx

from protocol import Ack, ComboEnd, ErrorReply, GiftEvent, SendGift
from server.auth import TokenIssuer
from server.money.flusher import Flusher
from server.runtime import Runtime
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer


async def _click(sender: Client, rid: str, tx: str, gift: str = "rose", room: str = "r",
                 combo: str = "c1") -> Ack | ErrorReply:
    await sender.send(SendGift(id=rid, room=room, gift=gift, count=1, tx=tx, combo=combo))
    reply = await sender.reply(rid)
    assert isinstance(reply, Ack | ErrorReply), reply
    return reply


async def _gift_rows(rt: Runtime, user: str) -> list[tuple[str, int]]:
    flusher = rt.components["flusher"]
    assert isinstance(flusher, Flusher)
    await asyncio.wait_for(flusher.wait_caught_up(), 30)  # the server's own, running flusher
    rows = await rt.pool.fetch(
        "SELECT ref, coins FROM ledger_tx WHERE kind = 'gift' AND user_id = $1 ORDER BY ref", user
    )
    return [(r["ref"], r["coins"]) for r in rows]


async def test_a_settled_combos_click_retried_five_times_is_one_debit_and_five_duplicate_acks(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await setup_room(rt, "other")
    await grant(rt, "fan", 100)
    sender = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    watcher = await open_client(server.ws_url, issuer.mint("w", "viewer"))
    try:
        await sender.join("r")
        await sender.join("other")
        await watcher.join("r")
        firsts = [await _click(sender, f"k{i}", f"t{i}") for i in range(3)]
        assert [a.balance for a in firsts if isinstance(a, Ack)] == [99, 98, 97]
        # Another gift (Ice Cream, as in the issue) or another room under the same combo id: refused
        # before the debit, with its own code.
        wrong_gift = await _click(sender, "g", "t-gift", gift="ice_cream")
        wrong_room = await _click(sender, "o", "t-room", room="other")
        for refused in (wrong_gift, wrong_room):
            assert isinstance(refused, ErrorReply) and refused.code == "combo_mismatch", refused
        assert await rt.components["wallet"].balance("fan") == 97
        await sender.send(ComboEnd(id="end", room="r", combo="c1"))
        assert isinstance(await sender.reply("end"), Ack)
        settled = [e for e in await watcher.wait_events(4) if isinstance(e, GiftEvent)]
        assert [(e.combo, e.count, e.coins) for e in settled] == [("c1", 3, 3)]

        # The last click's ack was lost: the client retries the same tx, five times.
        retries = [await _click(sender, f"again{i}", "t2") for i in range(5)]
        for ack in retries:
            assert isinstance(ack, Ack), ack
            assert (ack.tx, ack.balance, ack.duplicate) == ("t2", 97, True)
        # A new click of the settled combo: nothing charged, so combo_not_found.
        late = await _click(sender, "late", "t-late")
        assert isinstance(late, ErrorReply) and late.code == "combo_not_found", late
        assert await rt.components["wallet"].balance("fan") == 97
        # Every coin charged is in the settled event, and the room showed nothing more.
        rows = await _gift_rows(rt, "fan")
        assert rows == [("t0", 1), ("t1", 1), ("t2", 1)]
        assert sum(c for _, c in rows) == settled[0].coins
        # The retries showed nothing: the next event in the room's order is a later gift's.
        marker = await _click(sender, "m", "t-marker", combo="c2")
        assert isinstance(marker, Ack)
        events = await watcher.wait_events(5)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[-1].combo == "c2"
    finally:
        await sender.close()
        await watcher.close()


async def test_combo_retries_and_mismatches_over_http_answer_like_the_websocket(
    server: RunningServer,
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 100)
    headers = {"Authorization": "Bearer " + rt.issuer.mint("fan", "viewer")}

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        async def click(tx: str, gift: str = "rose") -> httpx.Response:
            body = {"room": "r", "gift": gift, "count": 1, "tx": tx, "combo": "h1"}
            return await http.post("/api/gifts", json=body, headers=headers)

        for tx in ("h-a", "h-b"):
            assert (await click(tx)).status_code == 200
        mismatch = await click("h-c", gift="ice_cream")
        assert mismatch.status_code == 409
        assert mismatch.headers["content-type"] == "application/problem+json"
        assert mismatch.json()["code"] == "combo_mismatch"
        assert await rt.components["realtime"].state.settle_combos("r", sender="fan",
                                                                   combo="h1") == 1
        # settle_combos alone (the room) is what the timeout sweeper does; the wallet's deadline
        # has not passed, so close it as combo_end would.
        assert await rt.components["wallet"].close_combo("fan", "h1")
        for _ in range(5):
            again = await click("h-b")
            assert again.status_code == 200, again.text
            assert again.json()["duplicate"] is True and again.json()["balance"] == 98
        late = await click("h-d")
        assert late.status_code == 404 and late.json()["code"] == "combo_not_found"
    assert await rt.components["wallet"].balance("fan") == 98
    assert await _gift_rows(rt, "fan") == [("h-a", 1), ("h-b", 1)]
