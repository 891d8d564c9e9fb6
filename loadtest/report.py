"""The report: one JSON document (the contract), a rich table, and the verdict.

`build` turns a run into the JSON keys the issue lists (plus context); `verdict_ok` says whether
the promises held; `print_table` shows the same figures to a person.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest import stats
from loadtest.cpu import limit_verdict
from loadtest.runner import RunData
from loadtest.verify import as_dict


def build(data: RunData, baselines: dict[str, Any] | None, server_processes: int) -> dict[str, Any]:
    plan = data.plan
    v = data.verification
    load_s = data.load_s or plan.duration_s
    out: dict[str, Any] = {
        "scenario": plan.scenario,
        "run_id": data.run_id,
        "started_at": data.started_at,
        "duration_s": round(load_s, 3),
        "server_processes": server_processes,
        "connections": plan.connections,
        "connections_open": data.connected,
        "connect_errors": data.connect_errors,
        "rooms": plan.rooms,
        "senders": plan.senders,
        "target_rate": plan.rate,
        "target_deliveries_per_s": plan.deliveries_rate,
        "aborted": data.aborted,
    }
    if v is not None:
        out.update({
            "gifts_sent": v.gifts_sent,
            "gifts_accepted": v.gifts_accepted,
            "gifts_rejected": v.gifts_rejected,
            "gifts_unanswered": v.gifts_unanswered,
            "accepted_per_s": stats.rate(v.gifts_accepted, load_s),
            "ack_ms": stats.summary_ms(v.ack_s),
            "deliveries_expected": v.expected,
            "deliveries_received": v.received,
            "deliveries_lost": v.lost,
            "deliveries_duplicated": v.duplicated,
            "deliveries_out_of_order": v.out_of_order,
            # Every sequenced event handed to a reading member (combo progress included).
            "deliveries_per_s": stats.rate(v.receipts, load_s),
            "delivery_ms": stats.summary_ms(v.delivery_s),
            "verification": as_dict(v),
        })
        if plan.slow_fraction > 0:
            out["slow"] = slow_figures(data)
    else:
        out.update({k: None for k in (
            "gifts_sent", "gifts_accepted", "gifts_rejected", "accepted_per_s", "ack_ms",
            "deliveries_expected", "deliveries_received", "deliveries_lost",
            "deliveries_duplicated", "deliveries_out_of_order", "deliveries_per_s", "delivery_ms",
        )})
    out["server_rss_kib_per_connection"] = data.rss_kib_per_conn
    out["server_rss_mib"] = {"loaded": round(data.rss_kib_start / 1024, 1),
                             "end": round(data.rss_kib_end / 1024, 1)}
    out["catch_up"] = data.catch_up
    out["ledger"] = data.ledger.as_dict() if data.ledger else {
        "redis_total": None, "postgres_total": None, "consistent": None,
        "flusher_max_lag": None, "note": "no Redis/Postgres access: ledger not checked",
    }
    out["cpu"] = data.cpu
    server_cpu = ((data.cpu or {}).get("groups") or {}).get("server", {}).get("cpu_s")
    receipts = v.receipts if v is not None else 0
    # The scale-out figure: server CPU per delivered event, comparable across process counts.
    out["server_cpu_us_per_delivery"] = (round(server_cpu / receipts * 1e6, 3)
                                         if server_cpu and receipts else None)
    # Frames, not events, are what fan-out pays per connection (issue 13).
    out["frames_received"] = data.frames
    out["events_per_frame"] = round(receipts / data.frames, 2) if data.frames else None
    out["server_cpu_us_per_frame"] = (round(server_cpu / data.frames * 1e6, 3)
                                      if server_cpu and data.frames else None)
    # Room state pushes priced in (issue 13): their share of the messages members received.
    out["state_received"] = data.state
    out["state_share"] = (round(data.state / (data.state + receipts), 4)
                          if data.state + receipts else None)
    # The spend path's figure (issue 13): server CPU per accepted gift.
    accepted = out.get("gifts_accepted") or 0
    out["server_cpu_us_per_accepted"] = (round(server_cpu / accepted * 1e6, 1)
                                         if server_cpu and accepted else None)
    out["limit"] = limit_verdict(data.cpu) if data.cpu else None
    out["chaos_events"] = data.chaos_events
    # Rooms whose last seq could not be read at the end: the highest seq seen stands in for it.
    out["probe_errors"] = data.probe_errors
    out["reconnects"] = data.reconnects
    # Exceptions inside the load tester's own tasks: its figures cannot be trusted then.
    out["worker_failures"] = data.worker_failures
    out["profile"] = data.profile
    out["timeline"] = data.timeline
    out["baselines"] = baselines or {}
    out["ratios"] = ratios(out, baselines or {})
    out["ok"] = verdict_ok(out)
    return out


def slow_figures(data: RunData) -> dict[str, Any]:
    """D2: the readers' latency before and after the slow tenth stopped reading, and what became
    of the slow ones (closed 4008 = told to reconnect and resume)."""
    v = data.verification
    assert v is not None
    at = data.plan.warmup_s
    before = [lat for t, lat in v.delivery_points if t < at]
    after = [lat for t, lat in v.delivery_points if t >= at + 1.0]
    closes: dict[str, int] = {}
    for r in data.results:
        for m in r.members:
            if m.slow:
                key = str(m.closes[-1]) if m.closes else "open"
                closes[key] = closes.get(key, 0) + 1
    return {
        "stopped_reading_at_s": at,
        "readers_delivery_ms_before": stats.summary_ms(before),
        "readers_delivery_ms_after": stats.summary_ms(after),
        "slow_members_final_state": closes,
    }


def ratios(out: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    spend = b.get("spend_evalsha", {}).get("calls_per_s")
    r["accepted_per_s_vs_evalsha"] = stats.ratio(out.get("accepted_per_s"), spend)
    ws = b.get("ws_broadcast", {})
    r["deliveries_per_s_vs_broadcast_ceiling"] = stats.ratio(
        out.get("deliveries_per_s"), ws.get("ceiling_events_per_s"))
    r["deliveries_per_s_vs_broadcast_single"] = stats.ratio(
        out.get("deliveries_per_s"), ws.get("single_events_per_s"))
    r["cpu_per_frame_vs_broadcast_single"] = stats.ratio(
        out.get("server_cpu_us_per_frame"), ws.get("single_cpu_us_per_frame"))
    r["flusher_catch_up_vs_copy"] = stats.ratio(
        (out.get("catch_up") or {}).get("entries_per_s"), b.get("copy", {}).get("rows_per_s"))
    ours_p99 = (out.get("delivery_ms") or {}).get("p99")
    r["delivery_p99_vs_broadcast_p99"] = stats.ratio(ours_p99, ws.get("fixed_p99_ms"))
    return r


def verdict_ok(out: dict[str, Any]) -> bool:
    ledger = out.get("ledger") or {}
    return (
        out.get("aborted") is None
        and not out.get("worker_failures")
        and out.get("deliveries_lost") == 0
        and out.get("deliveries_duplicated") == 0
        and out.get("deliveries_out_of_order") == 0
        and ((out.get("gifts_accepted") or 0) > 0 or not out.get("senders"))
        # Nobody held to delivery (every member counted as dropped) proves nothing.
        and ((out.get("deliveries_expected") or 0) > 0 or not out.get("connections"))
        and ledger.get("consistent") is not False
    )


def write_json(out: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(out, indent=2, sort_keys=False, default=str) + "\n")


def _ms(d: dict[str, Any] | None) -> str:
    if not d or d.get("p50") is None:
        return "-"
    return f"{d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f} / {d['max']:.1f}"


def print_table(out: dict[str, Any], console: Console) -> None:
    t = Table(title=f"giftwire load test: {out['scenario']}", show_header=False)
    t.add_column("figure", style="bold")
    t.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("servers / connections / rooms",
         f"{out['server_processes']} / {out['connections_open']} of {out['connections']} "
         f"/ {out['rooms']}"),
        ("duration", f"{out['duration_s']} s"),
        ("gifts sent / accepted", f"{out['gifts_sent']} / {out['gifts_accepted']}"),
        ("gifts rejected", out["gifts_rejected"] or "none"),
        ("accepted gifts/s", out["accepted_per_s"]),
        ("ack ms p50/p95/p99/max", _ms(out["ack_ms"])),
        ("deliveries expected / received",
         f"{out['deliveries_expected']} / {out['deliveries_received']}"),
        ("lost / duplicated / out of order",
         f"{out['deliveries_lost']} / {out['deliveries_duplicated']} / "
         f"{out['deliveries_out_of_order']}"),
        ("deliveries/s", out["deliveries_per_s"]),
        ("delivery ms p50/p95/p99/max", _ms(out["delivery_ms"])),
        ("server RSS KiB per connection", out["server_rss_kib_per_connection"]),
        ("ledger redis / postgres / consistent",
         f"{out['ledger'].get('redis_total')} / {out['ledger'].get('postgres_total')} / "
         f"{out['ledger'].get('consistent')}"),
        ("flusher max lag", out["ledger"].get("flusher_max_lag")),
    ]
    for name, group in ((out.get("cpu") or {}).get("groups") or {}).items():
        if not group["cores"] and not group["processes"]:
            continue
        rows.append((f"cpu {name}", f"{group['cores']:.2f} cores "
                                    f"(busiest process {group['max_process_cores']:.0%})"))
    rows.append(("limit", out.get("limit")))
    for key, value in out["ratios"].items():
        if value is not None:
            rows.append((key, f"{value:.3f}x"))
    for event in out.get("chaos_events") or []:
        rows.append((f"chaos t={event['t']}s", event["event"]))
    if out.get("aborted"):
        rows.append(("ABORTED", f"[red]{out['aborted']}[/red]"))
    for failure in out.get("worker_failures") or ():
        rows.append(("worker failure", f"[red]{failure}[/red]"))
    rows.append(("verdict", "[green]OK[/green]" if out["ok"] else "[red]FAILED[/red]"))
    for name, value in rows:
        t.add_row(name, str(value))
    console.print(t)
