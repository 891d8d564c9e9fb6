"""The hub: rooms with local members, one broker subscription per room, fan-out, recovery.

Per process, a room exists while it has local members (or joins in flight): the first join
subscribes to its channel, the last leave unsubscribes. Each event from the broker is decoded once,
encoded at most once per codec, and the same bytes are pushed to every member's writer (see
server/edge/writer.py); nothing here awaits a client.

Ordering and recovery (docs/hub.md): events carry the room's position (epoch, seq). A seq that
skips ahead or a broker resubscription makes the room fetch what it missed from the room history,
holding live events back meanwhile; an event of another epoch, or a seq going back, moves members
to the current epoch with `gap`. A join reads its snapshot only after the subscription is
confirmed and buffers live events until the snapshot is sent, so it neither misses nor repeats an
event. Battles (server/hub/battlestate.py) ride on the same channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgpack

from protocol import CloseCode, ComboProgress, Joined, ServerMessage
from server.hub.battlestate import BattleSides, BattleView, show_battle
from server.hub.broker import Broker
from server.hub.combos import ComboSweeper
from server.hub.envelopes import StatePushes, event_message
from server.hub.recovery import Place, merge, place
from server.hub.rooms import (
    Codecs,
    HubError,
    HubSettings,
    Member,
    MemberState,
    Outgoing,
    Room,
    RoomEvent,
    move_members,
    push_event,
    replay,
)
from server.hub.roomstate import RoomState
from server.metrics import Metrics

log = logging.getLogger("giftwire.hub")


class Hub:
    def __init__(
        self,
        broker: Broker,
        state: RoomState,
        metrics: Metrics,
        sweeper: ComboSweeper,
        settings: HubSettings | None = None,
    ) -> None:
        self.broker = broker
        self.state = state
        self.metrics = metrics
        self.sweeper = sweeper
        self.settings = settings or HubSettings()
        self.codecs = Codecs()
        self.battles = BattleSides(state)
        self.states = StatePushes(self.settings, self._broadcast)
        self._rooms: dict[str, Room] = {}
        self._by_channel: dict[str, Room] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.recoveries = 0
        self._controls: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._resubscribed: list[Callable[[], None]] = []
        broker.on_message = self._on_message
        broker.on_resubscribed = self._on_resubscribed

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="hub-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for room in self._rooms.values():
            room.cancel_timers()

    @property
    def rooms(self) -> dict[str, int]:
        """Room -> local member count (tests, metrics)."""
        return {name: len(r.members) for name, r in self._rooms.items()}

    def on_control(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Envelopes of this kind on a room's channel are not room events (moderation's "mod",
        the overlays' "ovl"): they go to `handler`, decoded once with everything else."""
        self._controls[kind] = handler

    def on_resubscribed(self, listener: Callable[[], None]) -> None:
        """Called after pub/sub re-subscribed: control messages published meanwhile were lost."""
        self._resubscribed.append(listener)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- join / leave ---------------------------------------------------------------------------

    async def join(self, member: Member, name: str, after: int | None, request_id: str | None,
                   epoch: str | None = None) -> None:
        """Join a room: push `joined`, the replay, then live events. Raises HubError."""
        room = self._rooms.get(name)
        if room is None:
            room = Room(name, self.state.keys.room_channel(name))
            room.battle = BattleView(partial(self._broadcast, room), self.settings.state_interval_s)
            self._rooms[name] = room
            self._by_channel[room.channel] = room
            room.subscribed = asyncio.ensure_future(self.broker.subscribe(room.channel))
            self.metrics.rooms.set(len(self._rooms))
        if member in room.members:
            raise HubError("already_joined", f"already in room {name}")
        room.joining += 1
        st = MemberState()
        try:
            assert room.subscribed is not None
            try:
                async with asyncio.timeout(self.settings.subscribe_timeout_s):
                    await asyncio.shield(room.subscribed)
            except TimeoutError:
                raise HubError("unavailable", "the room's channel is not available now") from None
            room.members[member] = st
            snap = await self.state.join(
                name, member=member.conn_id if member.counted else None, after=after, epoch=epoch
            )
            if not snap.exists:
                raise HubError("room_not_found", f"no room {name}")
        except BaseException:
            if room.members.get(member) is st:
                del room.members[member]
            raise
        finally:
            room.joining -= 1
            self._release_if_empty(room)
        if room.epoch is None:
            room.epoch = snap.epoch
        # A snapshot of another epoch than the room's: the epoch changed around this join, and
        # Redis, asked once the member is live, says which one is current.
        resync = snap.epoch != room.epoch
        if not resync:
            room.floor = snap.seq if room.floor is None else min(room.floor, snap.seq)
        if room.top is None and room.top_pending is None:
            room.top, room.goal = snap.top, snap.goal
        joined = Joined(
            id=request_id, room=name, creator=snap.creator, live=snap.live,
            viewers=snap.viewers, top=snap.top, goal=snap.goal, seq=snap.seq, epoch=snap.epoch,
            resume=snap.resume,
        )
        writer = member.writer
        st.epoch = room.epoch if snap.epoch == room.epoch else snap.epoch  # shared: see _deliver
        data, size = Outgoing(self.codecs, joined).encoded(member.binary)
        if not writer.push_control(data, size):
            st.buffer, st.last_seq = None, snap.seq  # closing: hold nothing for it
            return
        start = snap.seq if snap.resume != "ok" or after is None else after
        events = (m for ev in snap.events if (m := event_message(ev)) is not None)
        last = await replay(self.codecs, room, member, st, events, start, self.settings.max_replay)
        if last is None:
            return  # left or cut while its replay was read
        st.last_seq = max(last, snap.seq)
        held, st.buffer = st.buffer or [], None
        for out in held:
            push_event(self.codecs, name, member, st, out)
        if room.resync_after_join or resync:
            room.resync_after_join = False
            self._recover(room)
        await show_battle(self.battles, self.codecs, room, member)

    async def leave(self, member: Member, name: str) -> bool:
        room = self._rooms.get(name)
        if room is None or room.members.pop(member, None) is None:
            return False
        self._release_if_empty(room)
        if member.counted:
            with contextlib.suppress(Exception):
                await self.state.remove_presence(name, member.conn_id)
        return True

    async def leave_all(self, member: Member) -> None:
        for name in [n for n, r in self._rooms.items() if member in r.members]:
            await self.leave(member, name)

    def _release_if_empty(self, room: Room) -> None:
        if room.members or room.joining or self._rooms.get(room.name) is not room:
            return
        del self._rooms[room.name]
        del self._by_channel[room.channel]
        room.cancel_timers()
        self.metrics.rooms.set(len(self._rooms))
        self.broker.unsubscribe(room.channel)

    # -- incoming -------------------------------------------------------------------------------

    def _on_message(self, channel: str, data: bytes) -> None:
        room = self._by_channel.get(channel)
        if room is None:
            return  # a message in flight for a room we just left
        try:
            env = msgpack.unpackb(data, raw=False)
            kind = env.get("k") if type(env) is dict else None
        except (ValueError, msgpack.UnpackException) as exc:
            log.error("undecodable message on %s skipped (%s)", channel, type(exc).__name__)
            return
        if kind == "ev":
            msg = event_message(env.get("ev"))
            if msg is None:
                return
            self.metrics.events.inc()
            if "top" in env or "goal" in env:
                self.states.on_envelope(room, env)  # first: the round may ride with the event
            self._event(room, msg)
        elif kind == "st":
            self.states.on_envelope(room, env)
        elif (control := self._controls.get(kind)) is not None:
            control(env)
        elif kind != "bt":
            log.error("unknown envelope on %s skipped", channel)
        if kind == "bt" or (kind == "ev" and env.get("bt") is not None):  # a battle update
            room.battle.on_envelope(room.name, env)

    def _event(self, room: Room, msg: RoomEvent) -> None:
        if room.recovering is not None:
            if len(room.recovering) >= self.settings.max_replay:
                # The history fetch is not coming back (Redis failing): hold no more; members
                # reconnect and resume, which the history then answers (or says `gap`).
                for member in list(room.members):
                    member.kill(CloseCode.TOO_SLOW, "room recovery failed: resume")
                return
            room.recovering.append(msg)
            return
        action = place(room, msg)
        if action is Place.DELIVER:
            self._deliver(room, msg)
        elif action is not Place.DUPLICATE:
            room.recovering = [msg] if action is Place.FETCH_HOLD else []
            self._recover(room, started=True)

    def _deliver(self, room: Room, msg: RoomEvent) -> None:
        started = time.perf_counter()
        room.last_seq = msg.seq
        self._track_combo(room, msg)
        out = Outgoing(self.codecs, msg, msg.seq)
        # The room's own string (equal to the event's): members hold it, so the per-member
        # comparison below is an identity check on the fan-out path.
        epoch = room.epoch or msg.epoch
        delivered = 0
        for member, st in room.members.items():
            if st.buffer is not None:
                st.buffer.append(out)
            elif st.epoch != epoch:
                delivered += push_event(self.codecs, room.name, member, st, out)
                st.epoch = epoch
            elif msg.seq > st.last_seq:
                st.last_seq = msg.seq
                data, size = out.encoded(member.binary)
                if member.writer.push(data, size):
                    delivered += 1
        self.states.after_event(room)  # the state round, when due, shares the event's frames
        self.metrics.deliveries.inc(delivered)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)

    def _track_combo(self, room: Room, msg: RoomEvent) -> None:
        if isinstance(msg, ComboProgress):
            room.open_combos.add(f"{msg.sender}\0{msg.combo}")
        elif msg.combo is not None:
            room.open_combos.discard(f"{msg.sender}\0{msg.combo}")

    def _broadcast(self, room: Room, msg: ServerMessage) -> None:
        out = Outgoing(self.codecs, msg)
        for member, st in room.members.items():
            if st.buffer is None:
                data, size = out.encoded(member.binary)
                member.writer.push(data, size)

    # -- recovery -------------------------------------------------------------------------------

    def _on_resubscribed(self) -> None:
        self.metrics.pubsub_resubscribes.inc()
        for room in list(self._rooms.values()):
            self._recover(room)
        for listener in self._resubscribed:
            listener()

    def _recover(self, room: Room, *, started: bool = False) -> None:
        if room.recovering is not None and not started:
            return  # already fetching; live events are being held
        after = room.last_seq if room.last_seq is not None else room.floor
        if after is None:
            room.resync_after_join = True  # nothing handed out yet: the join will come back
            return
        if room.recovering is None:
            room.recovering = []
        self.recoveries += 1
        self.metrics.hub_recoveries.inc()
        self._spawn(self._fetch_missed(room, room.epoch or "", after), f"recover {room.name}")

    async def _fetch_missed(self, room: Room, epoch: str, after: int) -> None:
        delay = 0.05
        while True:
            if self._rooms.get(room.name) is not room:
                return  # everyone left meanwhile
            try:
                since = await self.state.since(
                    room.name, epoch, after, self.settings.max_replay
                )
                break
            except Exception as exc:
                log.warning("recovering %s failed (%s); retrying", room.name, exc)
                await asyncio.sleep(delay)  # backoff while Redis is unreachable
                delay = min(delay * 2, 2.0)
        if self._rooms.get(room.name) is not room:
            return
        held, room.recovering = room.recovering or [], None
        got = merge(since, held, epoch, after)
        if since.epoch != epoch:
            self._new_epoch(room, since.epoch, since.start)
        else:
            move_members(self.codecs, room, after)  # members whose snapshot was of an older epoch
        if got.lost:
            # The history no longer reaches back: these members cannot be made whole here.
            log.warning("room %s lost events beyond its history; members must resume", room.name)
            for member in list(room.members):
                member.kill(CloseCode.TOO_SLOW, "missed events beyond the room history")
        for msg in got.events:
            if room.last_seq is None or msg.seq > room.last_seq:
                self._deliver(room, msg)
        if got.ask_again:
            self._recover(room)

    def _new_epoch(self, room: Room, epoch: str, start: int) -> None:
        """The room's history restarted: move every member to (epoch, start), telling it `gap`;
        fresh leaderboard and goal follow (the old ones may hold lost gifts)."""
        log.warning("room %s: history restarted (epoch %s from seq %d; was %s at %s): members "
                    "told gap", room.name, epoch, start, room.epoch, room.last_seq)
        self.metrics.room_epochs.inc()
        room.epoch, room.last_seq, room.live_seq, room.floor = epoch, start, start, start
        move_members(self.codecs, room, start)
        self._spawn(self._refresh_state(room), f"refresh {room.name}")

    async def _refresh_state(self, room: Room) -> None:
        try:
            snap = await self.state.join(room.name, member=None, after=None)
        except Exception as exc:
            log.warning("refreshing %s failed (%s); its next event brings it", room.name, exc)
            return
        if self._rooms.get(room.name) is room:
            room.top, room.top_pending, room.goal = snap.top, None, snap.goal
            self.states.push(room, everything=True)

    # -- periodic: combos, presence, viewer counts ----------------------------------------------

    async def _tick_loop(self) -> None:
        s = self.settings
        last_viewers = last_presence = time.monotonic()
        while True:
            await asyncio.sleep(s.tick_s)  # the sweeper's period
            now = time.monotonic()
            try:
                await self.sweeper.sweep({n for n, r in self._rooms.items() if r.open_combos})
                if now - last_viewers >= s.viewers_interval_s:
                    refresh = now - last_presence >= s.presence_refresh_s
                    await self._update_viewers(refresh)
                    last_viewers = now
                    if refresh:
                        last_presence = now
            except Exception:
                log.exception("hub tick failed")

    async def _update_viewers(self, refresh: bool) -> None:
        rooms = list(self._rooms.values())
        # Concurrent calls: the script runner sends them as one pipeline.
        counts = await asyncio.gather(*(
            self.state.refresh_presence(
                room.name, [m.conn_id for m in room.members if m.counted] if refresh else []
            )
            for room in rooms
        ))
        for room, count in zip(rooms, counts, strict=True):
            if self._rooms.get(room.name) is room:
                self.states.on_viewers(room, count)
