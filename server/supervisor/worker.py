"""A worker: one full server process (hub, flusher, event loop) on its share of the port.

Started by the supervisor as `python -m server serve` with `GIFTWIRE_WORKER_INDEX` set (its slot),
`SUPERVISOR_FD_ENV` naming the read end of a pipe whose write end only the supervisor holds, and
`PROMETHEUS_MULTIPROC_DIR` (server/metrics.py). It drains on SIGTERM exactly as a lone server
does (server/serve.py); and when the supervisor itself is gone (the pipe reads end-of-file, even
after a SIGKILL of the supervisor) it drains and exits too, so no worker outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from server.config import Config
from server.runtime import worker_index
from server.serve import DrainingServer, uvicorn_config
from server.supervisor.sockets import shared_socket

log = logging.getLogger("giftwire.worker")

SUPERVISOR_FD_ENV = "GIFTWIRE_SUPERVISOR_FD"


class WorkerServer(DrainingServer):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:  # start-up failed
            return
        raw = os.environ.get(SUPERVISOR_FD_ENV)
        if raw:
            asyncio.get_running_loop().add_reader(int(raw), self._supervisor_gone, int(raw))
        log.info("worker %s (pid %d) serving", worker_index(), os.getpid())

    def _supervisor_gone(self, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)
        if self._drain_task is None:
            log.warning("worker %s: the supervisor is gone; draining", worker_index())
            self.handle_exit(signal.SIGTERM, None)


def run_worker(config: Config) -> None:
    """Serve on this worker's own socket of the shared port (URLs resolved by the supervisor)."""
    sock = shared_socket(config.host, config.port)
    server = WorkerServer(uvicorn_config(config), config.drain_timeout_s)
    server.run(sockets=[sock])
