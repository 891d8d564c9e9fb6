"""`--url`: the harness drives a server it did not start, and still checks the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from server.config import Config
from tests.support.servers import subprocess_server

pytestmark = pytest.mark.slow


async def test_a_running_server_is_load_tested_and_its_ledger_checked(
    config: Config, redis: Redis, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # The per-connection flood guard would refuse part of the smoke rate; a deployment under
    # test raises it the same way.
    config = dataclasses.replace(config, rate_per_s=10_000.0, rate_burst=10_000)
    async with subprocess_server(config) as server:
        out = tmp_path / "out.json"
        env = {**os.environ, **server.config.to_env()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest", "run", "--scenario", "smoke",
            "--url", server.base_url, "--json", str(out), "--quiet",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    report = json.loads(out.read_text())
    assert report["gifts_accepted"] > 0
    assert report["deliveries_lost"] == report["deliveries_duplicated"] == 0
    assert report["deliveries_out_of_order"] == 0
    assert report["ledger"]["consistent"] is True
    # The server's CPU is found by its listening port, not left in "other".
    assert report["cpu"]["groups"]["server"]["processes"] == 1
