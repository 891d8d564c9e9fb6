"""Settling a battle: close both sides, read the final scores, record the result, announce it.

Each side closes in its own slot (`room_battle_close.lua`): from then on no gift scores there, so
the score it returns is final. Closing is idempotent (a closed side returns the same score again),
and the Postgres update from `running` decides who announces: a settle retried after a crash, or run
by two processes at once, records and announces the result once.

A battle is settled on time by whichever process notices first: a periodic sweep of every process
(running battles past their end, from Postgres), or a touch: a gift into either room
(`room_event.lua` says when the side is due), a join (the hub's battle snapshot) or a read of the
room's battle over HTTP. So it ends even when no process of either room is alive at that moment:
the scores wait in Redis for the next touch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from protocol import BattlePhase, BattleResult
from server.auth import Principal
from server.hub.battlestate import SETTLE_GRACE_MS, result_of
from server.live.battles import _COLUMNS, Battle, BattleError, Battles, redis_now_ms, top_json

log = logging.getLogger("giftwire.battles")

SWEEP_INTERVAL_S = 0.5


async def settle(battles: Battles, b: Battle, *, cancel: bool = False) -> Battle:
    """Close and record `b` (running); returns it as it now stands (still running when its
    window is not over and `cancel` is false)."""
    closed = []
    for room in (b.room_a, b.room_b):
        state, score, top = await battles.sides.close(room, b.id, now=cancel)
        if state == "open":
            return b
        # 'none': the side never opened (a start that died half-way) or expired: nothing scored.
        closed.append((score, top) if state == "closed" else (0, None))
    (score_a, top_a), (score_b, top_b) = closed
    sides = b.sides(score_a, score_b, top_a, top_b)
    result, winner = (BattleResult.CANCELLED.value, None) if cancel else result_of(*sides)
    row = await battles.rt.pool.fetchrow(
        f"""UPDATE battles SET state = $2, score_a = $3, score_b = $4, top_a = $5, top_b = $6,
            result = $7, winner = $8, updated_at = now() WHERE id = $1 AND state = 'running'
            RETURNING {_COLUMNS}""",
        b.id, "cancelled" if cancel else "ended", score_a, score_b, top_json(top_a),
        top_json(top_b), result, winner)
    if row is None:  # settled meanwhile, elsewhere: that one announced it
        return await battles.get(b.id)
    done = Battle.of(row)
    await battles.publish(done, BattlePhase.END, sides)
    return done


async def cancel(battles: Battles, who: Principal, battle_id: str) -> Battle:
    """Cancel a battle; a running one is settled at once with the scores so far."""
    done = await battles.cancel_unstarted(who, battle_id)
    if done is not None:
        return done
    b = await settle(battles, await battles.get(battle_id), cancel=True)
    if b.state != "cancelled":  # it ended (or was cancelled) meanwhile
        raise BattleError("battle_state", f"the battle is {b.state} already")
    return b


class Settler:
    """Settles due battles: on a touch (at most one settle per battle in flight here) and on a
    periodic sweep."""

    def __init__(self, battles: Battles) -> None:
        self.battles = battles
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._sweep: asyncio.Task[None] | None = None

    def touch(self, _room: str, battle_id: str) -> None:
        """A battle found due (by a gift or a join): settle it in the background."""
        if battle_id not in self._inflight:
            task = asyncio.create_task(self._settle_id(battle_id), name=f"settle {battle_id}")
            self._inflight[battle_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(battle_id, None))

    async def _settle_id(self, battle_id: str) -> None:
        try:
            b = await self.battles.get(battle_id)
            if b.state == "running":
                await settle(self.battles, b)
        except Exception as exc:  # the sweep, or the next touch, tries again
            log.warning("settling battle %s failed: %s", battle_id, exc)

    async def is_due(self, b: Battle) -> bool:
        now = await redis_now_ms(self.battles.rt)
        return b.end_ms is not None and now >= b.end_ms + SETTLE_GRACE_MS

    async def due(self) -> int:
        """Settle every running battle whose window and grace are over; how many were."""
        now = await redis_now_ms(self.battles.rt)
        rows = await self.battles.rt.pool.fetch(
            f"SELECT {_COLUMNS} FROM battles WHERE state = 'running' AND end_ms <= $1",
            now - SETTLE_GRACE_MS)
        settled = 0
        for row in rows:
            b = await settle(self.battles, Battle.of(row))
            settled += b.state != "running"
        return settled

    def start(self) -> None:
        self._sweep = asyncio.create_task(self._run(), name="battle-sweep")

    async def _run(self) -> None:
        failing = False  # a backend down (Postgres, Redis): said once, not every period
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)  # the sweep's period
            try:
                await self.due()
            except Exception as exc:
                if not failing:
                    log.warning("battle sweep failed (%s); retrying every %.1f s", exc,
                                SWEEP_INTERVAL_S)
                failing = True
                continue
            if failing:
                log.info("battle sweep works again")
                failing = False

    async def stop_sweep(self) -> None:
        """No more periodic sweeps here (tests of settling on a touch alone)."""
        sweep, self._sweep = self._sweep, None
        if sweep is not None:
            sweep.cancel()
            await asyncio.gather(sweep, return_exceptions=True)

    async def stop(self) -> None:
        await self.stop_sweep()
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
