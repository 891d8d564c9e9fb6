"""The server as users run it: a real `python -m server serve` process."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from server.config import Config
from server.storage.embedded import free_port
from tests.support.servers import subprocess_server, wait_ready


async def test_sigterm_drains_and_exits_cleanly(config: Config, pool: object) -> None:
    async with subprocess_server(config) as running:
        assert running.process is not None
        running.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(running.process.wait, 30)
    assert code == 0


async def test_with_no_urls_it_starts_embedded_servers_and_becomes_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {"GIFTWIRE_PORT": str(port), "GIFTWIRE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc, timeout=60)
        async with httpx.AsyncClient() as client:
            ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
        assert ready["status"] == "ready"
        assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()  # AOF on, like prod
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        assert proc.stderr is not None
        proc.stderr.close()
    assert code == 0
    # The embedded servers stopped with it: no process still runs on this data directory.
    leftovers = [
        p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
        if any(str(tmp_path) in part for part in (p.info["cmdline"] or []))
    ]
    assert leftovers == []


def test_cli_refuses_bad_configuration_with_a_clear_message() -> None:
    env = {**os.environ, "GIFTWIRE_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve"], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "GIFTWIRE_PORT" in result.stderr
