"""A revocation ends the token's open sessions on every process through Redis, not on the next
periodic check: once the session has heard `token_revoked`, no gift it sends is carried out."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.frames import Opcode

import protocol as wire
from protocol import Ack, ErrorReply, ServerMessage
from server.auth import TokenIssuer
from server.config import Config
from tests.conftest import with_config
from tests.edge.support import frame, raw, upgrade
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import inprocess_server

# On one Redis and on a cluster (where the announcement is a sharded publish in its own slot).
pytestmark = pytest.mark.both_modes

ROOM = "revoked-room"
CODEC = wire.codec_for(wire.SUBPROTOCOL_MSGPACK)


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


class _RawSession:
    """A client that keeps sending after the server has said it is closing the session, as a
    hostile one may: every frame it reads is filed in order, the close code last."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.messages: list[ServerMessage] = []
        self.close_code: int | None = None

    def send(self, msg: wire.ClientMessage) -> None:
        self.writer.write(frame(Opcode.BINARY, CODEC.encode_client(msg)))

    async def _read(self) -> None:
        opcode, payload = await _server_frame(self.reader)
        if opcode == Opcode.CLOSE.value:
            self.close_code = int.from_bytes(payload[:2], "big")
        else:
            self.messages.extend(CODEC.decode_server(payload))

    async def until(self, wanted: type[ServerMessage]) -> ServerMessage:
        """Read until a message of this type (the close first fails)."""
        while not any(isinstance(m, wanted) for m in self.messages):
            if self.close_code is not None:
                raise AssertionError(f"closed {self.close_code} before a {wanted.__name__}")
            await self._read()
        return [m for m in self.messages if isinstance(m, wanted)][-1]

    async def until_closed(self) -> int:
        while self.close_code is None:
            await self._read()
        # Our close reply: the server then closes TCP at once instead of on its close timer.
        self.writer.write(frame(Opcode.CLOSE, self.close_code.to_bytes(2, "big")))
        await self.writer.drain()
        return self.close_code


async def test_a_revoked_session_is_closed_4004_and_no_later_gift_is_carried_out(
    config: Config, redis: object, pool: object, issuer: TokenIssuer
) -> None:
    # Half a heartbeat (the periodic check) is half an hour here: only the announcement through
    # Redis can end the sessions while this test runs.
    cfg = with_config(config, heartbeat_s=3600, idle_timeout_s=7200)
    async with inprocess_server(cfg) as one, inprocess_server(cfg) as two:
        await setup_room(one.runtime, ROOM)
        await grant(one.runtime, "rv", 100)
        token = issuer.mint("rv", "viewer")
        here = await open_client(one.ws_url, token)  # on the process that serves the revoke
        async with raw(two.config.port) as (reader, writer):  # and on another one
            assert b" 101 " in await upgrade(reader, writer)
            session = _RawSession(reader, writer)
            session.send(wire.Hello(v=1, client="revoked", token=token))
            await session.until(wire.Welcome)
            session.send(wire.Join(id="j", room=ROOM))
            await session.until(wire.Joined)
            session.send(wire.SendGift(id="g1", room=ROOM, gift="rose", count=1, tx="before"))
            served = await session.until(Ack)
            assert isinstance(served, Ack) and served.id == "g1"

            async with httpx.AsyncClient(base_url=one.base_url) as http:
                resp = await http.post("/api/tokens/revoke",
                                       headers={"authorization": f"Bearer {token}"})
            assert resp.status_code == 200, resp.text
            # The revocation reached process two: it says so, unasked ...
            told = await session.until(ErrorReply)
            assert isinstance(told, ErrorReply) and (told.code, told.id) == ("token_revoked", None)
            # ... and a gift sent after that, on the still open socket, is not carried out.
            session.send(wire.SendGift(id="g2", room=ROOM, gift="rose", count=1, tx="after"))
            assert await session.until_closed() == 4004

        assert await here.wait_closed() == 4004
        assert [m.code for m in here.messages if isinstance(m, ErrorReply)] == ["token_revoked"]
        after_revocation = session.messages[session.messages.index(told):]
        assert [getattr(m, "id", None) for m in after_revocation] == [None]
        assert not any(isinstance(m, Ack) for m in after_revocation)
        wallet = two.runtime.components["wallet"]
        assert await wallet.balance("rv") == served.balance  # one rose debited, the first only
        # The HTTP balance read's revocation lookup (revoked.lua, batched with the wallet read on
        # the script runner; on a cluster in the revocation key's own slot) refuses it too.
        async with httpx.AsyncClient(base_url=two.base_url) as http:
            resp = await http.get("/api/me/balance", headers={"authorization": f"Bearer {token}"})
        assert (resp.status_code, resp.json()["code"]) == (401, "token_revoked")
