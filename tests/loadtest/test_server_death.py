"""A server that dies mid-run: the report says so (and which one, and how), and nothing hangs."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.cli import EXIT_ABORTED

pytestmark = pytest.mark.slow


def _server_children(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "server" in cmd and "serve" in cmd:
            found.append(child)
    return found


async def test_a_server_killed_mid_run_aborts_the_run_with_a_report(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "run", "--scenario", "smoke", "--spawn", "1",
        "--duration", "60", "--json", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        # The load phase prints a progress line ("t=...") once gifts are flowing.
        deadline = time.monotonic() + 60
        while not any(line.lstrip().startswith("t=") for line in seen):
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            assert line, "the load tester exited before the load phase:\n" + "".join(seen)
            seen.append(line.decode(errors="replace"))
        servers = _server_children(proc.pid)
        assert len(servers) == 1
        servers[0].send_signal(signal.SIGKILL)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        seen.append(rest.decode(errors="replace"))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "".join(seen)
    assert proc.returncode == EXIT_ABORTED, output[-3000:]
    assert "ABORTED" in output
    report = json.loads(out.read_text())
    assert "killed by signal 9" in report["aborted"]
    assert report["ok"] is False
    # Far from the 60 s asked for: the run stopped when the server died.
    assert report["duration_s"] < 60
