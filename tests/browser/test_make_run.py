"""`make run` (`giftwire serve --demo`) as a real process: it prints working URLs, its bots'
gifts fly on the printed overlay, and Ctrl-C (SIGINT) stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
from typing import IO

import pytest
from playwright.async_api import Page

from server.config import Config
from server.storage.embedded import free_port
from tests.browser.support import wait_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_make_run_prints_urls_whose_overlay_shows_the_bots_gifts_and_stops_on_ctrl_c(
    page: Page, config: Config, redis: object, pool: object
) -> None:
    port = free_port()
    env = {**os.environ, **config.to_env(), "GIFTWIRE_PORT": str(port),
           "GIFTWIRE_DEMO_BOTS": "2", "GIFTWIRE_LOG_LEVEL": "WARNING",
           # A bot gift every 0.25 s instead of 8 s: three alerts in about a second.
           "GIFTWIRE_DEMO_BOT_PACE_S": "0.25"}
    with tempfile.TemporaryFile() as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve", "--demo",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=errors,
        )
        try:
            assert proc.stdout is not None
            banner = ""
            async with asyncio.timeout(60):
                while "Ctrl-C stops everything" not in banner:
                    line = await proc.stdout.readline()
                    assert line, f"exited early: {_tail(errors)}"
                    banner += line.decode()
            overlay_url = re.search(r"(http://\S+/overlay\?token=\S+)", banner)
            assert overlay_url, banner
            assert f"http://127.0.0.1:{port}/demo" in banner

            await page.goto(overlay_url.group(1) + "&duration=50&gap=0")
            await wait_page(page, "window.giftwireOverlay.state === 'joined'")
            # The bots are gifting: alerts arrive without anyone in the test sending anything.
            await wait_page(page, "window.giftwireOverlay.shownTotal >= 3")
            assert await page.evaluate("window.giftwireOverlay.top.length") >= 1

            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(20):
                code = await proc.wait()
            assert code == 0, _tail(errors)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _tail(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read()[-3000:].decode(errors="replace")


