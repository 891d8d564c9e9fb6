"""Starting what a run needs: Redis and Postgres (the machine's or embedded), giftwire servers.

Embedded services start once per run and every spawned server gets their URLs, so two servers
share one Redis exactly as in production. Servers are real child processes (`python -m server
serve`), each on its own free port, configured through `Config.to_env()`; their stderr goes to a
log file whose tail the report quotes when one dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from server.config import Config, cluster_seeds, is_cluster_url
from server.storage.cluster.local import LocalCluster, local_cluster
from server.storage.embedded import embedded_services, free_port

READY_TIMEOUT_S = 60.0


@dataclass
class Services:
    redis_url: str
    database_url: str
    embedded: bool
    workdir: Path
    cluster: LocalCluster | None = None  # started for this run (--redis-cluster)

    def redis_pids(self) -> list[int]:
        if self.cluster is not None:
            return self.cluster.pids()
        if is_cluster_url(self.redis_url):  # the nodes the URL names (not the ones it does not)
            return [pid for _, port in cluster_seeds(self.redis_url)
                    for pid in listening_pids(port, children=False)]
        return listening_pids(urlsplit(self.redis_url).port or 6379, children=False)

    def postgres_pids(self) -> list[int]:
        # The postmaster and every backend it forked: a backend does the COPY work. Embedded
        # Postgres listens on a Unix socket only; its postmaster.pid names the postmaster.
        pidfile = self.workdir / "postgres" / "postmaster.pid"
        if self.embedded and urlsplit(self.database_url).port is None and pidfile.exists():
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                root = psutil.Process(int(pidfile.read_text().split()[0]))
                return [root.pid, *(p.pid for p in root.children(recursive=True))]
            return []
        return listening_pids(urlsplit(self.database_url).port or 5432, children=True)


@contextlib.contextmanager
def services(workdir: Path | None = None, *, cluster: bool = False) -> Iterator[Services]:
    """REDIS_URL/DATABASE_URL when set, else embedded ones started for this run only. With
    `cluster`: REDIS_URL when it names a cluster, else a local 3+3 Redis Cluster for this run."""
    redis_url = os.environ.get("REDIS_URL") or None
    database_url = os.environ.get("DATABASE_URL") or None
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-load-")))
        if cluster and not is_cluster_url(redis_url):
            nodes = workdir / "redis-cluster"
            nodes.mkdir()
            local = stack.enter_context(local_cluster(nodes))
            if database_url is None:
                _, database_url = stack.enter_context(
                    embedded_services(workdir, redis=False, postgres=True))
            yield Services(local.url, database_url or "", False, workdir, local)
            return
        if redis_url and database_url:
            yield Services(redis_url, database_url, False, workdir)
            return
        r, d = stack.enter_context(
            embedded_services(workdir, redis=redis_url is None, postgres=database_url is None)
        )
        yield Services(redis_url or r or "", database_url or d or "", True, workdir)


def listening_pids(port: int, *, children: bool) -> list[int]:
    pids: set[int] = set()
    with contextlib.suppress(psutil.Error):
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                pids.add(c.pid)
    if children:
        for pid in list(pids):
            with contextlib.suppress(psutil.Error):
                pids.update(p.pid for p in psutil.Process(pid).children(recursive=True))
    return sorted(pids)


@dataclass
class ServerProcess:
    """One `python -m server serve` child; `restart` keeps its port so clients can come back."""

    config: Config
    log_path: Path
    argv: tuple[str, ...] = ("serve",)
    process: subprocess.Popen[bytes] | None = None
    expected_exit: bool = False  # set before a deliberate kill, so the monitor does not alarm
    starts: int = 0
    _log: object = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}/ws"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        env = {**os.environ, **self.config.to_env()}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", *self.argv],
            env=env, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()  # the child holds its own descriptor
        self.expected_exit = False
        self.starts += 1

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll the child's /readyz (an external process offers nothing better to wait on)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self.exit_code()
                if code is not None:
                    raise ServerDied(self, code)
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + "/readyz").status_code == 200:
                        break
                time.sleep(0.05)
            else:
                raise TimeoutError(
                    f"server on port {self.config.port} not ready after {timeout:.0f}s")
        self._wait_workers(deadline)

    def _wait_workers(self, deadline: float) -> None:
        """Under `--workers N`: until each of the N workers has answered (a fresh connection per
        request, hashed anew onto the workers' sockets), so that no client connects while only
        some of them listen and the load starts unevenly spread."""
        seen: set[str] = set()
        while len(seen) < self.config.worker_count and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=2.0) as client:
                seen.add(client.get(self.base_url + "/healthz").json()["process"])
            if len(seen) < self.config.worker_count:
                time.sleep(0.01)
        if len(seen) < self.config.worker_count:
            raise TimeoutError(f"{len(seen)} of {self.config.worker_count} workers answered")

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL: the crash a chaos run simulates (no drain, no goodbye)."""
        if self.process is not None and self.process.poll() is None:
            self.expected_exit = True
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.expected_exit = True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


class ServerDied(RuntimeError):
    def __init__(self, server: ServerProcess, code: int) -> None:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        super().__init__(
            f"server process on port {server.config.port} (pid {server.pid}) died ({how})"
        )
        self.server = server
        self.code = code


def server_config(base: Config, services: Services, *, port: int | None = None) -> Config:
    import dataclasses

    return dataclasses.replace(
        base,
        redis_url=services.redis_url,
        database_url=services.database_url,
        host="127.0.0.1",
        port=port or free_port(),
        data_dir=services.workdir / "data",
    )


async def drop_run_data(cfg: Config) -> None:
    """Machine Redis/Postgres: remove the run's keys and schema (embedded ones are discarded)."""
    from server.runtime import delete_prefix, redis_client
    from server.storage.db import drop_schema

    assert cfg.redis_url and cfg.database_url
    redis = redis_client(cfg.redis_url)
    try:
        await delete_prefix(redis, cfg.key_prefix)
    finally:
        await redis.aclose()
    await drop_schema(cfg.database_url, cfg.db_schema)
