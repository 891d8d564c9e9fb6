"""A supervised server for tests: `python -m server serve` with GIFTWIRE_WORKERS=N, its log read
line by line so a test waits on what the supervisor and its workers say, not on time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from server.config import Config
from server.storage.embedded import free_port

SERVING = re.compile(r"worker (\d+) \(pid (\d+)\) serving")


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    base_url: str
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            loop.call_soon_threadsafe(self._add, line)
        loop.call_soon_threadsafe(self._add, None)

    def _add(self, line: str | None) -> None:
        if line is not None:
            self.lines.append(line)
        self._changed.set()

    async def wait_line(self, pattern: str, start: int = 0,
                        timeout: float = 60) -> tuple[int, re.Match[str]]:
        """The first log line from index `start` on matching `pattern`, and its index (waits)."""
        async with asyncio.timeout(timeout):
            seen = start
            while True:
                for i in range(seen, len(self.lines)):
                    if (found := re.search(pattern, self.lines[i])) is not None:
                        return i, found
                seen = len(self.lines)
                if self.process.poll() is not None and not self._changed.is_set():
                    raise AssertionError("server exited:\n" + "\n".join(self.lines[-40:]))
                self._changed.clear()
                await self._changed.wait()

    async def worker_pids(self, count: int, start: int = 0) -> dict[int, int]:
        """Worker slot -> pid, once `count` workers have said they serve (from line `start`)."""
        pids: dict[int, int] = {}
        at = start
        while len(pids) < count:
            index, found = await self.wait_line(SERVING.pattern, at)
            at = index + 1
            pids[int(found.group(1))] = int(found.group(2))
        return pids


@contextlib.asynccontextmanager
async def client_of(base_url: str, pid: int, attempts: int = 400
                    ) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose one kept-alive connection is served by worker process `pid`: a fresh
    connection per try until `pid` answers /healthz (each new connection's source port is hashed
    anew onto the workers' sockets)."""
    for _ in range(attempts):
        client = httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=1))
        try:
            body = (await client.get("/healthz")).json()
            if body["process"].endswith(f"-{pid}"):
                yield client
                return
        finally:
            await client.aclose()
    raise AssertionError(f"pid {pid} answered none of {attempts} fresh connections")


@contextlib.asynccontextmanager
async def supervised_server(config: Config, workers: int = 2, *, embedded: bool = False
                            ) -> AsyncIterator[Supervised]:
    """`embedded`: without REDIS_URL and DATABASE_URL, so the supervisor starts its own under
    `config.data_dir`."""
    port = free_port()
    env = {**os.environ, **config.to_env(), "GIFTWIRE_WORKERS": str(workers),
           "GIFTWIRE_PORT": str(port), "GIFTWIRE_HOST": "127.0.0.1", "GIFTWIRE_LOG_LEVEL": "INFO"}
    if embedded:
        env = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Supervised(proc, f"http://127.0.0.1:{port}")
    reader = threading.Thread(target=running._read, args=(asyncio.get_running_loop(),),
                              daemon=True)
    reader.start()
    try:
        await running.worker_pids(workers)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 40)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        await asyncio.to_thread(reader.join, 10)
        if proc.stderr:
            proc.stderr.close()
