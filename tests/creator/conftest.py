"""Fixtures of the creator tests: an HTTP client of the suite's server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.servers import RunningServer


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client
