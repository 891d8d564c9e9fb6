"""`make run`'s live demo: a creator on air, a goal, funded viewers, bots gifting over WebSockets.

Started by the app when `config.demo` is on (`giftwire serve --demo`). Everything goes through the
real paths: the room goes live with `streams.go_live`, viewers are funded by idempotent admin
grants through the wallet, and the bots are ordinary protocol clients that connect to this same
server's `/ws`, spend their own coins and stream combos, exactly like a phone would. The console
gets the overlay and demo URLs with freshly minted tokens. Stopping the app cancels the bots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from protocol import (
    SUBPROTOCOL_MSGPACK,
    Ack,
    ComboEnd,
    ErrorReply,
    GoingAway,
    Hello,
    Join,
    Joined,
    MsgpackCodec,
    SendGift,
    ServerMessage,
    Welcome,
)
from server.money import streams
from server.money.catalog import Gift
from server.money.wallet import Wallet
from server.runtime import Runtime

if TYPE_CHECKING:
    from server.hub.roomstate import RoomState

log = logging.getLogger("giftwire.demo")

ROOM = "demo"
CREATOR = "demo-creator"
CREATOR_NAME = "Nova"
STREAM_TITLE = "giftwire demo stream"
GOAL_TITLE = "New camera"
GOAL_TARGET = 250_000
VIEWERS: tuple[tuple[str, str], ...] = (
    ("demo-mira", "Mira"),
    ("demo-jonas", "Jonas"),
    ("demo-aiko", "Aiko"),
    ("demo-ravi", "Ravi"),
    ("demo-lena", "Lena"),
    ("demo-tomas", "Tomás"),
)
# A viewer below this many coins gets a top-up grant (at start, and when a bot runs dry).
FLOOR_COINS = 100_000
TOP_UP_COINS = 500_000
# Relative frequency of each gift in the bots' mix: mostly small gifts, the odd big one, and
# about one Universe a minute with the default three bots.
WEIGHTS = {
    "rose": 30, "finger_heart": 14, "ice_cream": 10, "doughnut": 10, "hand_hearts": 8,
    "corgi": 7, "money_gun": 6, "sports_car": 4, "interstellar": 3, "lion": 2, "universe": 2,
}
COMBO_CHANCE = 0.35
ACK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DemoViewer:
    user: str
    name: str


@dataclass
class DemoState:
    room: str
    creator: str
    viewers: tuple[DemoViewer, ...]
    base_url: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # bots and the announcer
    bot_count: int = 0
    gifts_sent: int = 0

    def viewer(self, user: str) -> DemoViewer | None:
        return next((v for v in self.viewers if v.user == user), None)


def public_base_url(host: str, port: int) -> str:
    # A wildcard bind address is not something a browser can open.
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def overlay_url(rt: Runtime, state: DemoState, **options: str) -> str:
    token = rt.issuer.mint(state.creator, "overlay", name=CREATOR_NAME, room=state.room)
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{state.base_url}/overlay?token={token}{query}"


def room_state(rt: Runtime) -> RoomState:
    state: RoomState = rt.components["realtime"].state
    return state


async def fund(wallet: Wallet, user: str, *, floor: int = FLOOR_COINS) -> int:
    """Top the viewer up with an admin grant when below `floor`; returns the balance."""
    balance = await wallet.balance(user)
    if balance >= floor:
        return balance
    grant_id = f"demo-topup-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
    result = await wallet.grant(user, TOP_UP_COINS, grant_id, "demo-admin")
    return result.balance


async def seed(rt: Runtime) -> DemoState:
    """The demo creator's room live with a goal, and every demo viewer funded."""
    wallet: Wallet = rt.components["wallet"]
    cfg = rt.config
    await streams.go_live(
        rt, ROOM, CREATOR, STREAM_TITLE, on_change=rt.components.get("on_room_change")
    )
    await room_state(rt).set_goal(ROOM, GOAL_TITLE, GOAL_TARGET)
    viewers = tuple(DemoViewer(user, name) for user, name in VIEWERS)
    await asyncio.gather(*(fund(wallet, v.user) for v in viewers))
    return DemoState(ROOM, CREATOR, viewers, public_base_url(cfg.host, cfg.port))


# -- bots -------------------------------------------------------------------------------------


class BotError(Exception):
    """The server refused a bot's request in a way that needs a new connection."""


class Bot:
    """One demo viewer on its own WebSocket: joins the room, then gifts until cancelled."""

    def __init__(self, rt: Runtime, state: DemoState, viewer: DemoViewer, gifts: Sequence[Gift],
                 rng: random.Random) -> None:
        self.rt = rt
        self.state = state
        self.viewer = viewer
        self.gifts = list(gifts)
        self.weights = [WEIGHTS.get(g.id, 1) for g in self.gifts]
        self.rng = rng
        self.codec = MsgpackCodec()
        self.ws_url = state.base_url.replace("http://", "ws://") + "/ws"

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                # A short close timeout: at shutdown the server may be gone before it answers
                # our close frame, and Ctrl-C should not wait the default 10 s for it.
                async with connect(self.ws_url, subprotocols=[SUBPROTOCOL_MSGPACK],
                                   open_timeout=5, close_timeout=1, max_size=2**20) as ws:
                    await self.session(ws)
                    backoff = 0.2
            except (OSError, WebSocketException, BotError, TimeoutError) as exc:
                # Also the normal path at start-up: the bots start before uvicorn listens.
                log.debug("demo bot %s: %s; reconnecting", self.viewer.name, exc)
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(5.0, backoff * 2)

    async def session(self, ws: ClientConnection) -> None:
        token = self.rt.issuer.mint(self.viewer.user, "viewer", name=self.viewer.name)
        await ws.send(self.codec.encode_client(Hello(v=1, client="giftwire-demo-bot",
                                                     token=token)))
        await self.expect(ws, Welcome)
        await ws.send(self.codec.encode_client(Join(id="join", room=self.state.room)))
        await self.expect(ws, Joined)
        while True:
            await self.act(ws)
            # A pause between gifts, like a person deciding what to send next.
            await asyncio.sleep(0.5 + self.rng.random() * 2.5)

    async def act(self, ws: ClientConnection) -> None:
        gift = self.rng.choices(self.gifts, self.weights)[0]
        if gift.streakable and self.rng.random() < COMBO_CHANCE:
            combo = f"c-{uuid.uuid4().hex[:16]}"
            for _ in range(self.rng.randint(5, 40)):
                await self.send_gift(ws, gift.id, 1, combo)
                await asyncio.sleep(0.08 + self.rng.random() * 0.15)
            await ws.send(self.codec.encode_client(ComboEnd(room=self.state.room, combo=combo)))
            return
        count = self.rng.choice((1, 1, 1, 2, 3, 5, 10)) if gift.streakable else 1
        await self.send_gift(ws, gift.id, count, None)

    async def send_gift(self, ws: ClientConnection, gift: str, count: int,
                        combo: str | None) -> None:
        tx = uuid.uuid4().hex
        msg = SendGift(room=self.state.room, gift=gift, count=count, tx=tx, combo=combo)
        await ws.send(self.codec.encode_client(msg))
        reply = await self.reply_to(ws, tx)
        if isinstance(reply, Ack):
            self.state.gifts_sent += 1
            return
        if reply.code == "insufficient_funds":
            await fund(self.rt.components["wallet"], self.viewer.user)
            return
        if reply.code in ("rate_limited", "combo_not_found", "room_ended"):
            return
        raise BotError(f"gift refused: {reply.code}")

    async def reply_to(self, ws: ClientConnection, tx: str) -> Ack | ErrorReply:
        async with asyncio.timeout(ACK_TIMEOUT_S):
            while True:
                for msg in await self.receive(ws):
                    if isinstance(msg, Ack | ErrorReply) and msg.tx == tx:
                        return msg

    async def expect(self, ws: ClientConnection, kind: type[ServerMessage]) -> ServerMessage:
        async with asyncio.timeout(ACK_TIMEOUT_S):
            while True:
                for msg in await self.receive(ws):
                    if isinstance(msg, kind):
                        return msg
                    if isinstance(msg, ErrorReply):
                        raise BotError(f"{msg.code}: {msg.message}")

    async def receive(self, ws: ClientConnection) -> list[ServerMessage]:
        msgs = self.codec.decode_server(await ws.recv())
        if any(isinstance(m, GoingAway) for m in msgs):
            raise BotError("server going away")
        return msgs


async def start(rt: Runtime, stack: contextlib.AsyncExitStack) -> DemoState:
    """Seed the demo, start the bots, print the URLs; the stack stops the bots."""
    state = await seed(rt)
    rt.components["demo"] = state
    wallet: Wallet = rt.components["wallet"]
    gifts = list(wallet.catalog.gifts.values())
    rng = random.Random()
    for i in range(max(0, rt.config.demo_bots)):
        bot = Bot(rt, state, state.viewers[i % len(state.viewers)], gifts, rng)
        state.tasks.append(asyncio.create_task(bot.run(), name=f"demo-bot-{i}"))
        state.bot_count += 1
    state.tasks.append(asyncio.create_task(announce_when_listening(rt, state), name="demo-urls"))
    stack.push_async_callback(stop, state)
    return state


async def stop(state: DemoState) -> None:
    for task in state.tasks:
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)
    state.tasks.clear()


async def announce_when_listening(rt: Runtime, state: DemoState) -> None:
    """Print the URLs once they work: the app starts before uvicorn listens, and a URL printed
    earlier could be opened (or tested) too soon; printed last, it is not lost in start-up logs."""
    host = state.base_url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    delay = 0.02
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, rt.config.port)
        except OSError:
            await asyncio.sleep(delay)  # not listening yet
            delay = min(0.5, delay * 2)
            continue
        writer.close()
        break
    announce(rt, state)


def announce(rt: Runtime, state: DemoState) -> None:
    lines = [
        "",
        "giftwire demo is live",
        "  overlay (add it to OBS as a browser source, 1280x720 or 1920x1080):",
        f"    {overlay_url(rt, state)}",
        "  viewer demo (buy coins, send gifts, hold a gift for a combo):",
        f"    {state.base_url}/demo",
        f"  overlay preview without a server:  {state.base_url}/overlay?test=1",
        f"  {state.bot_count} bot(s) are gifting in room '{state.room}'. Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), file=sys.stdout, flush=True)
