"""Test helpers: a steady spend load, and a TCP proxy to Postgres that the test can cut."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from urllib.parse import parse_qs, urlsplit

from server.money.wallet import SpendRequest, Wallet


class SpendLoad:
    """Spends 1 coin at a time from several funded viewers until stopped; records what was
    accepted so a test can look for every accepted gift in the ledger."""

    def __init__(self, wallet: Wallet, room: str, users: list[str], concurrency: int = 8) -> None:
        self._wallet, self._room, self._users = wallet, room, users
        self._concurrency = concurrency
        self.accepted: set[tuple[str, str]] = set()
        self.refused: list[str | None] = []
        self._changed = asyncio.Condition()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count()

    async def __aenter__(self) -> SpendLoad:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _one(self) -> None:
        n = next(self._ids)
        user = self._users[n % len(self._users)]
        res = await self._wallet.spend(SpendRequest(user, self._room, "rose", 1, f"load-{n}"))
        if res.ok:
            self.accepted.add((user, f"load-{n}"))
        else:
            self.refused.append(res.code)

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.gather(*(self._one() for _ in range(self._concurrency)))
            async with self._changed:
                self._changed.notify_all()

    async def wait_accepted(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= n)


class PgProxy:
    """Forwards TCP connections to Postgres; `cut()` refuses new connections and breaks every
    open one (as a crashed or unreachable server would), `restore()` listens again."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
        self._unix = f"{host}/.s.PGSQL.{parts.port or 5432}" if host.startswith("/") else None
        self._host, self._port = host, parts.port or 5432
        self._user = parts.username or "postgres"
        self._db = parts.path.lstrip("/") or "postgres"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/{self._db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._unix:
            up_r, up_w = await asyncio.open_unix_connection(self._unix)
        else:
            up_r, up_w = await asyncio.open_connection(self._host, self._port)
        self._writers |= {writer, up_w}
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            for w in (writer, up_w):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
