"""The scale-out comparison end to end, small: a server of one worker, then of two, same load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_scale_out_runs_one_worker_then_two_and_compares_cpu_per_delivery(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--scenario", "scale-out", "--duration", "1",
         "--connections", "60", "--rooms", "2", "--senders", "6", "--workers", "1",
         "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    one, two = report["one_worker"], report["two_workers"]
    assert (one["server_workers"], two["server_workers"]) == (1, 2)
    for phase in (one, two):
        assert phase["ok"] is True and phase["lost"] == 0
        assert phase["server_cpu_us_per_delivery"] > 0 and phase["deliveries_per_s"] > 0
    # The supervisor and both its workers were counted as the server.
    assert [p["cpu"]["groups"]["server"]["processes"] for p in report["phases"]] == [1, 3]
    assert report["cpu_per_delivery_ratio"] == round(
        two["server_cpu_us_per_delivery"] / one["server_cpu_us_per_delivery"], 3)
