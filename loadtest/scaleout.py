"""The scale-out comparison: the same load on a server of one worker, then of two.

Both phases run in one invocation, one after the other on the same machine, so the ratio of
server CPU per delivery (goal: at most 1.15x, design notes section 4) compares like with like;
the load generator's CPU is reported beside each, since on a 2-core machine it shares the cores
with the workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console

from loadtest.scenarios import Plan

GOAL_RATIO = 1.15
PHASES = (1, 2)


def _figures(out: dict[str, Any]) -> dict[str, Any]:
    groups = (out.get("cpu") or {}).get("groups") or {}
    return {
        "server_workers": out.get("server_workers"),
        "deliveries_per_s": out.get("deliveries_per_s"),
        "server_cpu_us_per_delivery": out.get("server_cpu_us_per_delivery"),
        "server_cores": groups.get("server", {}).get("cores"),
        "load_generator_cores": groups.get("load_generator", {}).get("cores"),
        "redis_cores": groups.get("redis", {}).get("cores"),
        "other_cores": groups.get("other", {}).get("cores"),
        "machine_busy": (out.get("cpu") or {}).get("machine_busy"),
        "lost": out.get("deliveries_lost"),
        "ok": out.get("ok"),
    }


async def compare(plan: Plan, run_once: Callable[[Plan], Awaitable[dict[str, Any] | None]],
                  console: Console) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    for workers in PHASES:
        console.print(f"[bold]scale-out[/bold]: phase with {workers} worker(s)")
        out = await run_once(dataclasses.replace(plan, server_workers=workers))
        if out is None or out.get("aborted"):
            return {"scenario": plan.scenario, "ok": False, "aborted": (out or {}).get("aborted")
                    or f"the {workers}-worker phase did not complete", "phases": phases}
        phases.append(out)
    one, two = (_figures(p) for p in phases)
    a, b = one["server_cpu_us_per_delivery"], two["server_cpu_us_per_delivery"]
    ratio = round(b / a, 3) if a and b else None
    rate_a, rate_b = one["deliveries_per_s"], two["deliveries_per_s"]
    result = {
        "scenario": plan.scenario,
        "ok": all(p.get("ok") for p in phases),
        "aborted": None,
        "one_worker": one,
        "two_workers": two,
        "cpu_per_delivery_ratio": ratio,
        "deliveries_per_s_ratio": round(rate_b / rate_a, 3) if rate_a and rate_b else None,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio is not None and ratio <= GOAL_RATIO,
        "phases": phases,
    }
    console.print(f"scale-out: server CPU per delivery {a} us (1 worker) vs {b} us (2 workers): "
                  f"[bold]{ratio}x[/bold] (goal <= {GOAL_RATIO}x); deliveries/s {rate_a} vs "
                  f"{rate_b}; load generator {one['load_generator_cores']} vs "
                  f"{two['load_generator_cores']} cores")
    return result
