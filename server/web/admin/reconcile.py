"""Reconcile from the operator view: one run at a time in the whole deployment, its result in Redis.

`POST /api/admin/reconcile` takes a lock in Redis (so two operators, or two workers, never run it
twice at once), records `running` and answers 202 at once; the run itself (server/money/
reconcile.py: drain the ledger streams with a flusher of its own, compare, check the ledger) goes
on in that process's event loop and writes its result, `agree` or `differ` with the first
differences, or `failed` with the reason, where every process's `/api/admin/status` reads it. A
process that dies mid-run leaves the lock to expire after `LOCK_TTL_S`, and `running` stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from server.money.flusher import Flusher
from server.money.reconcile import reconcile
from server.runtime import Runtime, log_failure, process_name

log = logging.getLogger("giftwire.admin")

LOCK_TTL_S = 600
SHOWN_DIFFERENCES = 50


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _store(rt: Runtime, result: dict[str, Any]) -> None:
    await rt.redis.set(rt.keys.reconcile_result(), json.dumps(result, separators=(",", ":")))


async def start_reconcile(rt: Runtime, by: str, tasks: set[asyncio.Task[None]]
                          ) -> tuple[bool, dict[str, Any]]:
    """(started, the current result): False with the running one when a run is under way."""
    token = f"{process_name()}:{_now_ms()}"
    if not await rt.redis.set(rt.keys.reconcile_lock(), token, nx=True, ex=LOCK_TTL_S):
        raw = await rt.redis.get(rt.keys.reconcile_result())
        return False, json.loads(raw) if raw else {"status": "running"}
    result = {"status": "running", "started_at": _now_ms(), "finished_at": None, "by": by,
              "process": process_name(), "differences": None, "shown": []}
    await _store(rt, result)
    task = asyncio.create_task(_run(rt, result, token), name="admin-reconcile")
    tasks.add(task)  # held until done: a task nobody references may be collected mid-run
    task.add_done_callback(tasks.discard)
    return True, result


async def _run(rt: Runtime, result: dict[str, Any], token: str) -> None:
    wallet = rt.components.get("wallet")
    # Its own flusher (its own consumer name): the process's running flusher is not shared.
    flusher = Flusher(rt, wallet) if wallet is not None else None
    try:
        diffs = await reconcile(rt, flusher)
        result |= {"status": "differ" if diffs else "agree", "differences": len(diffs),
                   "shown": [str(d) for d in diffs[:SHOWN_DIFFERENCES]]}
    except asyncio.CancelledError:
        result |= {"status": "failed", "error": "the server stopped during the run"}
        raise
    except Exception as exc:
        log_failure(log, "reconcile", exc)
        result |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        result["finished_at"] = _now_ms()
        if flusher is not None:
            with contextlib.suppress(Exception):
                await flusher.stop()
        with contextlib.suppress(Exception):
            await _store(rt, result)
            if await rt.redis.get(rt.keys.reconcile_lock()) == token.encode():
                await rt.redis.delete(rt.keys.reconcile_lock())
        log.info("reconcile from the operator view: %s", result["status"])
