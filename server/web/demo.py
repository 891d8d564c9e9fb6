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
from collections.abc import AsyncIterator, Sequence
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
from server.live.overlay_keys import OverlayKeys
from server.money import streams
from server.money.catalog import Gift
from server.money.wallet import Wallet
from server.runtime import BACKEND_UNAVAILABLE, Runtime
from server.storage.db import UNAVAILABLE

if TYPE_CHECKING:
    from server.hub.roomstate import RoomState

log = logging.getLogger("giftwire.demo")

ROOM = "demo"
CREATOR = "demo-creator"
CREATOR_NAME = "Nova"
STREAM_TITLE = "giftwire demo stream"
GOAL_TITLE = "New camera"
# The goal is what the bots give in about this long at their pace (goal_target): it fills visibly
# during a demo session instead of being overshot within minutes.
GOAL_FILL_S = 3600
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
# about one Universe every six minutes at the default pace.
WEIGHTS = {
    "rose": 30, "finger_heart": 14, "ice_cream": 10, "doughnut": 10, "hand_hearts": 8,
    "corgi": 7, "money_gun": 6, "sports_car": 4, "interstellar": 3, "lion": 2, "universe": 2,
}
COMBO_CHANCE = 0.35
COMBO_CLICKS = (5, 40)
COUNTS = (1, 1, 1, 2, 3, 5, 10)  # a plain send of a streakable gift
ACK_TIMEOUT_S = 10.0
# Pacing (Config.demo_bot_pace_s, P): the bots act one at a time, P x [0.75, 1.25] apart, so
# bot alerts reach the overlay at least 0.75 P apart. The demo's overlay link shows an alert
# for P/4 (twice that for the biggest tier) with a gap of 0.075 P: at most 0.575 P on screen,
# less than the spacing, so the overlay's queue is empty whenever a bot alert arrives, never
# fills, and a viewer's own gift waits at most for the one alert on screen (4.6 s at P = 8 s).
# Combo clicks are spaced in proportion too (P = 8 s: 80-230 ms), so a smaller P runs the same
# demo faster, every ratio kept (the browser test runs three minutes of it in a fraction).
PACE_JITTER = (0.75, 1.25)
ALERT_SHARE = 0.25  # the overlay link's alert duration, a share of P
GAP_SHARE = 0.075  # the overlay link's gap between alerts, a share of P
CLICK_SHARE = (0.01, 0.02875)  # a combo click's spacing, a share of P


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
    pace_s: float = 8.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # bots and the announcer
    bot_count: int = 0
    gifts_sent: int = 0
    bot_alerts: int = 0  # bot actions that produced a room gift (one overlay alert each)

    def viewer(self, user: str) -> DemoViewer | None:
        return next((v for v in self.viewers if v.user == user), None)


def public_base_url(host: str, port: int) -> str:
    # A wildcard bind address is not something a browser can open.
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def overlay_url(rt: Runtime, state: DemoState, **options: str) -> str:
    """The room's overlay at its stable key URL (what a streamer keeps in OBS for months), its
    alerts timed to the bots' pace (see PACE_JITTER). While Postgres is unreachable the key
    cannot be made, so the link carries a token instead (valid for the token lifetime)."""
    try:
        credential = "key=" + await OverlayKeys(rt).issue(state.room, state.creator)
    except BACKEND_UNAVAILABLE + UNAVAILABLE:
        token = rt.issuer.mint(state.creator, "overlay", name=CREATOR_NAME, room=state.room)
        credential = f"token={token}"
    options = {"duration": str(round(state.pace_s * ALERT_SHARE * 1000)),
               "gap": str(round(state.pace_s * GAP_SHARE * 1000)), **options}
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{state.base_url}/overlay?{credential}{query}"


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
    target = goal_target(list(wallet.catalog.gifts.values()), cfg.demo_bot_pace_s)
    await room_state(rt).set_goal(ROOM, GOAL_TITLE, target)
    viewers = tuple(DemoViewer(user, name) for user, name in VIEWERS)
    await asyncio.gather(*(fund(wallet, v.user) for v in viewers))
    return DemoState(ROOM, CREATOR, viewers, public_base_url(cfg.host, cfg.port),
                     pace_s=cfg.demo_bot_pace_s)


def coins_per_action(gifts: Sequence[Gift]) -> float:
    """The coins one bot action gives on average (the mix of WEIGHTS, combos and counts)."""
    combo_clicks = sum(COMBO_CLICKS) / 2
    plain = sum(COUNTS) / len(COUNTS)
    streak = COMBO_CHANCE * combo_clicks + (1 - COMBO_CHANCE) * plain
    weights = [WEIGHTS.get(g.id, 1) for g in gifts]
    total = sum(g.coins * w * (streak if g.streakable else 1)
                for g, w in zip(gifts, weights, strict=True))
    return total / sum(weights)


def goal_target(gifts: Sequence[Gift], pace_s: float) -> int:
    """What the bots give in about GOAL_FILL_S at their pace, rounded to 10,000 coins (about
    1,060,000 with the shipped catalog at 8 s)."""
    coins = coins_per_action(gifts) * GOAL_FILL_S / pace_s
    return max(10_000, round(coins / 10_000) * 10_000)


# -- bots -------------------------------------------------------------------------------------


class BotError(Exception):
    """The server refused a bot's request in a way that needs a new connection."""


class Pacer:
    """The bots' one clock: one bot acts at a time, then all wait pace x PACE_JITTER."""

    def __init__(self, pace_s: float, rng: random.Random) -> None:
        self.pace_s = pace_s
        self.rng = rng
        self._turn = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._turn:
            yield
            low, high = PACE_JITTER
            # The pacing itself: the next bot's turn comes this much later.
            await asyncio.sleep(self.pace_s * (low + (high - low) * self.rng.random()))


class Bot:
    """One demo viewer on its own WebSocket: joins the room, then gifts on its turns."""

    def __init__(self, rt: Runtime, state: DemoState, viewer: DemoViewer, gifts: Sequence[Gift],
                 rng: random.Random, pacer: Pacer) -> None:
        self.pacer = pacer
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
            async with self.pacer.turn():
                await self.act(ws)

    async def act(self, ws: ClientConnection) -> None:
        gift = self.rng.choices(self.gifts, self.weights)[0]
        if gift.streakable and self.rng.random() < COMBO_CHANCE:
            combo = f"c-{uuid.uuid4().hex[:16]}"
            charged = 0
            low, high = CLICK_SHARE
            for _ in range(self.rng.randint(*COMBO_CLICKS)):
                charged += await self.send_gift(ws, gift.id, 1, combo)
                # A person's clicking rhythm (scaled with the pace).
                await asyncio.sleep(self.pacer.pace_s * (low + (high - low) * self.rng.random()))
            await ws.send(self.codec.encode_client(ComboEnd(id="end", room=self.state.room,
                                                            combo=combo)))
            # Settled before the turn ends: its alert is this turn's, not the next bot's.
            await self.reply_to(ws, "end", by_id=True)
            self.state.bot_alerts += charged > 0
            return
        count = self.rng.choice(COUNTS) if gift.streakable else 1
        self.state.bot_alerts += await self.send_gift(ws, gift.id, count, None)

    async def send_gift(self, ws: ClientConnection, gift: str, count: int,
                        combo: str | None) -> bool:
        """True when the gift was charged."""
        tx = uuid.uuid4().hex
        msg = SendGift(room=self.state.room, gift=gift, count=count, tx=tx, combo=combo)
        await ws.send(self.codec.encode_client(msg))
        reply = await self.reply_to(ws, tx)
        if isinstance(reply, Ack):
            self.state.gifts_sent += 1
            return True
        if reply.code == "insufficient_funds":
            await fund(self.rt.components["wallet"], self.viewer.user)
            return False
        if reply.code in ("rate_limited", "combo_not_found", "room_ended"):
            return False
        raise BotError(f"gift refused: {reply.code}")

    async def reply_to(self, ws: ClientConnection, key: str, *, by_id: bool = False
                       ) -> Ack | ErrorReply:
        """The reply to the request with this tx (or this request id)."""
        async with asyncio.timeout(ACK_TIMEOUT_S):
            while True:
                for msg in await self.receive(ws):
                    if isinstance(msg, Ack | ErrorReply) and (msg.id if by_id else msg.tx) == key:
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
    pacer = Pacer(state.pace_s, rng)
    for i in range(max(0, rt.config.demo_bots)):
        bot = Bot(rt, state, state.viewers[i % len(state.viewers)], gifts, rng, pacer)
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
    await announce(rt, state)


async def announce(rt: Runtime, state: DemoState) -> None:
    lines = [
        "",
        "giftwire demo is live",
        "  overlay (add it to OBS as a browser source, 1280x720 or 1920x1080):",
        f"    {await overlay_url(rt, state)}",
        "  viewer demo, as a guest viewer of your own (buy coins, send gifts, hold a gift for a"
        " combo):",
        f"    {state.base_url}/demo",
        f"  overlay preview without a server:  {state.base_url}/overlay?test=1",
        f"  {state.bot_count} bot(s) are gifting in room '{state.room}', one gift every"
        f" {state.pace_s:g} s. Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), file=sys.stdout, flush=True)
