"""Operators see the service through /metrics: a gift must show up in it."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from protocol import Ack, SendGift
from server.auth import TokenIssuer
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import RunningServer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_gift_is_counted_in_the_metrics(server: RunningServer, issuer: TokenIssuer) -> None:
    rt = server.runtime
    await setup_room(rt, "metrics-room")
    await grant(rt, "viewer1", 100)
    viewer = await open_client(server.ws_url, issuer.mint("viewer1", "viewer"))
    try:
        await viewer.join("metrics-room")
        await viewer.send(SendGift(id="g1", room="metrics-room", gift="rose", count=1, tx="tx-1"))
        ack = await viewer.reply("g1")
        assert isinstance(ack, Ack) and ack.balance == 99
        await viewer.wait_events(1, "metrics-room")
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            text = (await client.get("/metrics")).text
    finally:
        await viewer.close()
    samples = _samples(text)
    assert samples[("giftwire_connections", ())] == 1
    assert samples[("giftwire_rooms", ())] == 1
    assert samples[("giftwire_spends_total", (("outcome", "ok"),))] == 1
    assert samples[("giftwire_lua_seconds_count", (("script", "spend"),))] >= 1
    assert samples[("giftwire_room_events_total", ())] >= 1
    assert samples[("giftwire_deliveries_total", ())] >= 1
