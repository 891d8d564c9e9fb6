"""`giftwire serve`: one plain server process, a supervisor of N workers, or (in a child the
supervisor started) one of those workers."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile

from server.config import Config, ConfigError
from server.runtime import worker_index
from server.serve import resolved
from server.serve import serve as serve_alone
from server.storage import db
from server.supervisor.sockets import bound_port, shared_socket
from server.supervisor.supervisor import Supervisor
from server.supervisor.worker import run_worker

log = logging.getLogger("giftwire.supervisor")


def serve(config: Config) -> int:
    """Serve until drained; the exit status."""
    if worker_index() is not None:
        run_worker(config)
        return 0
    count = config.worker_count
    if count == 1:
        serve_alone(config)
        return 0
    return supervise(config, count)


def supervise(config: Config, count: int) -> int:
    try:  # the port first: taken, it is refused before anything starts
        hold = shared_socket(config.host, config.port)
    except OSError as exc:  # taken by another program (or not an address of this host)
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    metrics_dir = tempfile.mkdtemp(prefix="giftwire-metrics-")
    try:
        # Embedded services and migrations once, here, not once per worker.
        with resolved(config) as full:
            assert full.database_url is not None
            try:
                asyncio.run(db.migrate(full.database_url, full.db_schema))
            except (OSError, *db.UNAVAILABLE) as exc:
                # Workers start without Postgres and migrate when it returns (server/runtime.py).
                log.warning("migrations not applied now (%s); the workers will retry", exc)
            inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            env = {**inherited, **full.to_env(), "GIFTWIRE_WORKERS": "1",
                   "GIFTWIRE_PORT": str(bound_port(hold))}
            log.info("giftwire: %d workers on %s:%d", count, full.host, bound_port(hold))
            return asyncio.run(Supervisor(count, env, metrics_dir, full.drain_timeout_s).run())
    finally:
        hold.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
