"""How a hostile run is judged: each attack window against the honest pair's own quiet windows
of the same run, the ones right before and right after it (the quiet windows are interleaved
with the attacks: quiet, attack, quiet, attack, ..., quiet).

Why adjacent windows: on a shared VM the pair's p99 alone moves 2-3x within one run with the
host's CPU steal (BENCHMARKS.md, "Hostile edge, the attacker on its own core"); a quiet window
minutes away from an attack says what the machine did then, the two around it what it did
within ~20 s of it. Per p99 the higher of the two is the reference (as the run-wide rule before
it), so only what goes beyond 2x of the worst the machine gave the pair alone, right then, is
put on the attacker; the ratio against the lower one is reported beside it.
"""

from __future__ import annotations

from statistics import median
from typing import Any

RSS_LIMIT_MB = 50.0
P99_LIMIT = 2.0  # the pair's p99 under attack, as a multiple of its own baseline
P99_FLOOR_MS = 5.0  # baselines below this are noise on a shared machine: compare with this
P99_KEYS = ("ack_p99_ms", "event_p99_ms")


def quiet_reference(before: dict[str, Any], after: dict[str, Any],
                    pick: Any = max) -> dict[str, Any]:
    """Per p99, `pick` (the higher by default) of the two quiet windows around an attack."""
    name = "higher" if pick is max else "lower"
    ref: dict[str, Any] = {"rule": f"{name} of the two adjacent quiet windows, per p99"}
    for key in P99_KEYS:
        values = [w[key] for w in (before, after) if w.get(key) is not None]
        ref[key] = pick(values) if values else None
    return ref


def run_summary(quiet: list[dict[str, Any]]) -> dict[str, Any]:
    """The quiet windows' spread in one run (reported: how much the machine alone moved)."""
    out: dict[str, Any] = {"windows": len(quiet)}
    for key in P99_KEYS:
        values = [w[key] for w in quiet if w.get(key) is not None]
        out[key] = {"min": min(values), "median": median(values), "max": max(values)} \
            if values else None
    return out


def p99_ratio(pair: dict[str, Any], ref: dict[str, Any]) -> dict[str, float | None]:
    """The pair's p99 under attack over the reference (floored at P99_FLOOR_MS)."""
    out: dict[str, float | None] = {}
    for name, key in (("ack", "ack_p99_ms"), ("event", "event_p99_ms")):
        ratio = _ratio(pair, ref, key)
        out[name] = None if ratio is None else round(ratio, 2)
    known = [v for v in out.values() if v is not None]
    out["max"] = max(known) if known else None
    return out


def _ratio(pair: dict[str, Any], ref: dict[str, Any], key: str) -> float | None:
    return None if pair[key] is None else pair[key] / max(ref[key] or 0.0, P99_FLOOR_MS)


def judge(row: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    """What failed in one attack window (empty: every criterion of issue 10 held)."""
    failed = []
    if row["rss_growth_mb"] >= RSS_LIMIT_MB:
        failed.append("rss")
    if row["http_5xx"]:
        failed.append("5xx")
    if row["tracebacks"]:
        failed.append("tracebacks")
    pair = row["pair"]
    if pair["lost"] or pair["events"] < pair["acked"]:
        failed.append("lost events")
    for key in P99_KEYS:
        ratio = _ratio(pair, ref, key)
        if ratio is None or ratio > P99_LIMIT:
            failed.append(key)
    seen = row["attack"]
    if "error" in seen:
        failed.append("attack error")
    if seen.get("still_open_at_end") or seen.get("duplicate_key_accepted") \
            or seen.get("self_gift_accepted"):
        failed.append("attack succeeded")
    if "close_code" in seen and seen["close_code"] != 4004:
        failed.append("revoked session not closed 4004")
    if not row["server_alive"]:
        failed.append("died")
    return failed


def judge_all(rows: list[dict[str, Any]], quiet: list[dict[str, Any]]) -> None:
    """Attack i ran between quiet windows i and i + 1: judge it against them, in place."""
    assert len(quiet) == len(rows) + 1
    for i, row in enumerate(rows):
        ref = quiet_reference(quiet[i], quiet[i + 1])
        row["reference"] = ref
        row["p99_ratio"] = p99_ratio(row["pair"], ref)
        row["p99_ratio_lower_quiet"] = p99_ratio(
            row["pair"], quiet_reference(quiet[i], quiet[i + 1], min))
        row["failed"] = judge(row, ref)
