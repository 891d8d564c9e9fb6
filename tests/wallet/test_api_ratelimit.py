"""`POST /api/gifts` has a per-user token bucket (S2: a flood is refused, changes nothing), the
same one as the user's WebSocket gifts."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from protocol import Ack, ErrorReply, SendGift
from server.config import Config
from tests.hub.support import open_client
from tests.support.servers import RunningServer, inprocess_server

BURST = 5


@pytest.fixture
async def limited(config: Config, redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[RunningServer]:
    # No refill: which requests pass depends on the count alone, never on the clock.
    cfg = dataclasses.replace(config, rate_per_s=0.0, rate_burst=BURST)
    async with inprocess_server(cfg) as running:
        yield running


async def test_a_gift_flood_over_http_is_refused_per_user_and_debits_only_the_accepted(
    limited: RunningServer,
) -> None:
    rt = limited.runtime
    wallet = rt.components["wallet"]

    def auth(user: str, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": "Bearer " + rt.issuer.mint(user, role)}

    async with httpx.AsyncClient(base_url=limited.base_url) as http:
        live = await http.post("/api/rooms/stage/live", json={}, headers=auth("star", "creator"))
        assert live.status_code == 200, live.text
        for user in ("flooder", "calm"):
            assert (await wallet.grant(user, 100, f"g-{user}", "root")).ok

        def gift(user: str, tx: str) -> asyncio.Future[httpx.Response]:
            body = {"room": "stage", "gift": "rose", "count": 1, "tx": tx}
            return asyncio.ensure_future(http.post("/api/gifts", json=body, headers=auth(user)))

        flood = await asyncio.gather(*(gift("flooder", f"f{i}") for i in range(4 * BURST)))
        accepted = [r for r in flood if r.status_code == 200]
        refused = [r for r in flood if r.status_code != 200]
        assert len(accepted) == BURST
        assert len(refused) == 3 * BURST
        for r in refused:
            assert r.status_code == 429, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "rate_limited"
            assert int(r.headers["Retry-After"]) >= 1
        assert (await wallet.state("flooder")).coins == 100 - BURST  # a rose is 1 coin

        # A refused tx left no trace: no idempotency record, so it may be retried later.
        refused_txs = [f"f{i}" for i, r in enumerate(flood) if r.status_code != 200]
        assert not await rt.redis.exists(*(rt.keys.tx("flooder", tx) for tx in refused_txs))
        assert await rt.redis.exists(*(
            rt.keys.tx("flooder", f"f{i}") for i, r in enumerate(flood) if r.status_code == 200
        )) == BURST

        calm = await asyncio.gather(*(gift("calm", f"c{i}") for i in range(BURST)))
        assert [r.status_code for r in calm] == [200] * BURST
        assert (await wallet.state("calm")).coins == 100 - BURST
        assert (await wallet.state("flooder")).coins == 100 - BURST


async def test_websocket_and_http_gifts_of_one_user_draw_on_one_budget(
    limited: RunningServer,
) -> None:
    """A user sending through both paths at once gets one gift rate, not two: of the gifts sent
    concurrently over WebSocket and HTTP, exactly the burst is accepted and debited."""
    rt = limited.runtime
    wallet = rt.components["wallet"]
    token = rt.issuer.mint("both", "viewer")
    star = rt.issuer.mint("star", "creator")
    assert (await wallet.grant("both", 100, "g-both", "root")).ok
    # The join takes one of the connection's own BURST tokens; the gifts fit in the rest, so a
    # refusal on the socket can only come from the user's gift budget.
    per_path = BURST - 1
    async with httpx.AsyncClient(base_url=limited.base_url) as http:
        live = await http.post("/api/rooms/stage/live", json={},
                               headers={"Authorization": "Bearer " + star})
        assert live.status_code == 200, live.text
        ws = await open_client(limited.ws_url, token)
        try:
            await ws.join("stage")

            async def over_ws(i: int) -> bool:
                await ws.send(SendGift(id=f"w{i}", room="stage", gift="rose", count=1, tx=f"w{i}"))
                reply = await ws.reply(f"w{i}")
                if isinstance(reply, ErrorReply):
                    assert reply.code == "rate_limited", reply
                    return False
                assert isinstance(reply, Ack), reply
                return True

            async def over_http(i: int) -> bool:
                body = {"room": "stage", "gift": "rose", "count": 1, "tx": f"h{i}"}
                r = await http.post("/api/gifts", json=body,
                                    headers={"Authorization": "Bearer " + token})
                assert r.status_code in (200, 429), r.text
                return r.status_code == 200

            results = await asyncio.gather(*(over_ws(i) for i in range(per_path)),
                                           *(over_http(i) for i in range(per_path)))
        finally:
            await ws.close()
    assert sum(results) == BURST
    assert (await wallet.state("both")).coins == 100 - BURST  # a rose is 1 coin
