"""The same-run baselines the report divides by (issue #6, design.md section 4).

- `spend_evalsha`: raw single-call EVALSHA rate of `spend.lua` from Python (baseline_spend).
- `copy`: raw COPY of ledger rows into `ledger_tx` (baseline_copy).
- `ws_broadcast`: raw `websockets.broadcast` ceiling with 10 events per frame, and its p99 at the
  fixed delivery rate, for the same number of connections per server process (baseline_ws).
They run before the giftwire servers start, so nothing else competes for the two cores.
"""

from __future__ import annotations

from typing import Any

from loadtest.baseline_copy import measure_copy
from loadtest.baseline_spend import measure_spend
from loadtest.baseline_ws import measure_broadcast
from loadtest.scenarios import Plan

FIXED_DELIVERIES_PER_S = 50_000.0


def measure(plan: Plan, redis_url: str | None, database_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if redis_url:
        out["spend_evalsha"] = measure_spend(redis_url)
    if database_url:
        out["copy"] = measure_copy(database_url)
    per_process = max(1, plan.connections // max(1, plan.spawn))
    out["ws_broadcast"] = measure_broadcast(
        per_process, plan.deliveries_rate or FIXED_DELIVERIES_PER_S, plan.workers
    )
    return out
