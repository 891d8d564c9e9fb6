"""The CI run of the load tester: a real server process, real clients, the full verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Slow; and run on single Redis and again on the session's local Redis Cluster.
pytestmark = [pytest.mark.slow, pytest.mark.both_modes]

REQUIRED_KEYS = {
    "scenario", "duration_s", "server_processes", "connections", "rooms", "gifts_sent",
    "gifts_accepted", "gifts_rejected", "accepted_per_s", "ack_ms", "deliveries_expected",
    "deliveries_received", "deliveries_lost", "deliveries_duplicated", "deliveries_out_of_order",
    "deliveries_per_s", "delivery_ms", "server_rss_kib_per_connection", "ledger", "baselines",
    "ratios", "frames_received", "events_per_frame", "server_cpu_us_per_frame",
}


def test_smoke_run_delivers_everything_once_in_order_and_the_ledger_agrees(
    tmp_path: Path, redis_mode: str, request: pytest.FixtureRequest
) -> None:
    out, html = tmp_path / "out.json", tmp_path / "out.html"
    env, extra = dict(os.environ), []
    if redis_mode == "cluster":
        env["REDIS_URL"] = request.getfixturevalue("redis_cluster").url
        extra = ["--redis-cluster"]
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--scenario", "smoke", "--spawn", "1",
         "--json", str(out), "--html", str(html), "--quiet", *extra],
        capture_output=True, text=True, timeout=110, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report.keys() >= REQUIRED_KEYS
    assert report["aborted"] is None
    assert report["probe_errors"] == {}  # each room's last seq read by a fresh member
    assert report["gifts_accepted"] > 0
    assert report["gifts_accepted"] == report["gifts_sent"]
    assert report["deliveries_expected"] > 0
    assert report["deliveries_received"] == report["deliveries_expected"]
    assert report["deliveries_lost"] == 0
    assert report["deliveries_duplicated"] == 0
    assert report["deliveries_out_of_order"] == 0
    # Every event arrived inside some frame: never more frames than events plus replies.
    assert 0 < report["frames_received"] <= report["deliveries_received"] + 4 * report["gifts_sent"]
    assert report["events_per_frame"] > 0 and report["server_cpu_us_per_frame"] > 0
    ledger = report["ledger"]
    assert ledger["consistent"] is True
    assert ledger["redis_total"] == ledger["postgres_total"] > 0
    for key in ("p50", "p95", "p99", "max"):
        assert report["ack_ms"][key] is not None
        assert report["delivery_ms"][key] is not None
    assert {"server", "redis", "postgres", "load_generator"} <= report["cpu"]["groups"].keys()
    assert report["limit"]
    page = html.read_text()
    assert page.count("<svg") == 5 and "<script" not in page
