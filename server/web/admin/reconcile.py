"""Reconcile from the operator view: one run at a time in the whole deployment, its result in Redis.

`POST /api/admin/reconcile` takes a lease in Redis (so two operators, or two workers, never run it
twice at once), records `running` and answers 202 at once; the run itself (server/money/
reconcile.py: drain the ledger streams with a flusher of its own, compare, check the ledger) goes
on in that process's event loop and writes its result, `agree` or `differ` with the first
differences, or `failed` with the reason, where every process's `/api/admin/status` reads it.

The lease lasts `LEASE_MS` and the running process renews it every `RENEW_MS`, so a run whose
process died (killed, its host gone: nothing ran its clean-up) is known within `LEASE_MS`: readers
see its `running` result without a lease as `failed` ("abandoned"), and the next run may start.
A run that finds its lease lost (a process paused past `LEASE_MS`) stops, and never overwrites
the result of a run started after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError, WatchError

from server.money.flusher import Flusher
from server.money.reconcile import reconcile
from server.runtime import Runtime, log_failure, process_name

log = logging.getLogger("giftwire.admin")

LEASE_MS = 5000
RENEW_MS = LEASE_MS // 4  # renewals a lease outlives: a slow Redis call or two does not lose it
SHOWN_DIFFERENCES = 50


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"))


async def current_result(rt: Runtime) -> dict[str, Any] | None:
    """The last run's result; a `running` one whose lease is gone is reported abandoned."""
    raw, holder = await rt.redis.mget([rt.keys.reconcile_result(), rt.keys.reconcile_lock()])
    if not raw:
        return None
    result: dict[str, Any] = json.loads(raw)
    if result.get("status") == "running" and (holder or b"").decode() != result.get("run"):
        result |= {"status": "failed", "error": f"abandoned: process {result.get('process')} "
                                                "stopped during the run (its lease expired)"}
    return result


async def start_reconcile(rt: Runtime, by: str, tasks: set[asyncio.Task[None]]
                          ) -> tuple[bool, dict[str, Any]]:
    """(started, the current result): False with the running one when a run is under way."""
    token = f"{process_name()}:{_now_ms()}"
    if not await rt.redis.set(rt.keys.reconcile_lock(), token, nx=True, px=LEASE_MS):
        return False, await current_result(rt) or {"status": "running"}
    result = {"status": "running", "started_at": _now_ms(), "finished_at": None, "by": by,
              "process": process_name(), "run": token, "differences": None, "shown": []}
    await rt.redis.set(rt.keys.reconcile_result(), _dumps(result))
    task = asyncio.create_task(_run(rt, result, token), name="admin-reconcile")
    tasks.add(task)  # held until done: a task nobody references may be collected mid-run
    task.add_done_callback(tasks.discard)
    return True, result


async def _run(rt: Runtime, result: dict[str, Any], token: str) -> None:
    wallet = rt.components.get("wallet")
    # Its own flusher (its own consumer name): the process's running flusher is not shared.
    flusher = Flusher(rt, wallet) if wallet is not None else None
    run = asyncio.current_task()
    assert run is not None
    lease = asyncio.create_task(_keep_lease(rt, token, run), name="admin-reconcile-lease")
    try:
        diffs = await reconcile(rt, flusher)
        result |= {"status": "differ" if diffs else "agree", "differences": len(diffs),
                   "shown": [str(d) for d in diffs[:SHOWN_DIFFERENCES]]}
    except asyncio.CancelledError:
        result |= {"status": "failed",
                   "error": "stopped during the run (the server stopping, or its lease lost)"}
        raise
    except Exception as exc:
        log_failure(log, "reconcile", exc)
        result |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        lease.cancel()
        await asyncio.gather(lease, return_exceptions=True)
        result["finished_at"] = _now_ms()
        if flusher is not None:
            with contextlib.suppress(Exception):
                await flusher.stop()
        with contextlib.suppress(Exception):
            await _finish(rt, result, token)
        log.info("reconcile from the operator view: %s", result["status"])


async def _keep_lease(rt: Runtime, token: str, run: asyncio.Task[None]) -> None:
    """Renew the run's lease until cancelled; cancel the run if the lease was lost."""
    key = rt.keys.reconcile_lock()
    while True:
        await asyncio.sleep(RENEW_MS / 1000)
        try:
            async with rt.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                held = await pipe.get(key) == token.encode()
                if held:
                    pipe.multi()
                    pipe.pexpire(key, LEASE_MS)
                    await pipe.execute()
        except (RedisError, WatchError) as exc:  # a blip: the next renewal may still be in time
            log.warning("reconcile lease renewal failed: %s", exc)
            continue
        if not held:
            log.warning("reconcile lost its lease (process paused?): stopping the run")
            run.cancel()
            return


async def _finish(rt: Runtime, result: dict[str, Any], token: str) -> None:
    """Store the result and release the lease, in one step, unless a later run has started (its
    own `running` result is stored then): a run that lost its lease must not overwrite that."""
    lock, key = rt.keys.reconcile_lock(), rt.keys.reconcile_result()
    async with rt.redis.pipeline(transaction=True) as pipe:
        await pipe.watch(lock, key)
        raw, holder = await pipe.get(key), await pipe.get(lock)
        if not raw or json.loads(raw).get("run") != token:
            return
        pipe.multi()
        pipe.set(key, _dumps(result))
        if holder == token.encode():
            pipe.delete(lock)
        await pipe.execute()
