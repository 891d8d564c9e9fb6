"""`giftwire serve --workers N`: N worker processes on one port under a supervisor.

Real processes on the machine's Redis and Postgres: workers share the port and the rooms, a
SIGKILLed worker is restarted and serves again, SIGTERM drains every worker, `/metrics` from any
worker shows the whole server, the operator view shows each worker's connections, and every
worker's flusher is a consumer of its own name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from protocol import Ack, GiftEvent, GoingAway, SendGift
from server.auth import TokenIssuer
from server.config import Config, ConfigError, from_env
from server.money import streams
from server.money.wallet import Wallet
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner
from server.supervisor.supervisor import BACKOFF_MAX_S, BACKOFF_S, backoff_s
from tests.hub.support import Client, open_client
from tests.support.workers import Supervised, client_of, supervised_server

pytestmark = pytest.mark.slow


async def _metrics(client: httpx.AsyncClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = (await client.get("/metrics")).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def _members_on_every_worker(server: Supervised, issuer: TokenIssuer, room: str,
                                   users: list[str]) -> list[Client]:
    """Clients of `users` joined to `room`, checked (by each worker's own connection gauge) to be
    spread over both workers; each connection's source port decides its worker."""
    clients = [await open_client(server.ws_url, issuer.mint(u, "viewer")) for u in users]
    await asyncio.gather(*(c.join(room) for c in clients))
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        per_process = (await _metrics(client))["giftwire_process_connections"]
    busy = {labels["pid"] for labels, value in per_process if value > 0}
    assert len(busy) == 2, per_process  # 24 connections on one of 2 workers: p = 2**-23
    return clients


async def _admin_shows(http: httpx.AsyncClient, issuer: TokenIssuer,
                       connections: dict[str, int]) -> None:
    """Until `/api/admin/status` lists these connections per worker pid."""
    headers = {"authorization": f"Bearer {issuer.mint('ops', 'admin')}"}
    while True:
        status = (await http.get("/api/admin/status", headers=headers)).json()
        if {str(p["pid"]): p["connections"] for p in status["processes"]} == connections:
            return
        await asyncio.sleep(0.1)  # polling other processes' heartbeats over HTTP


async def test_two_workers_serve_one_port_one_room_and_sum_their_metrics(
    config: Config, runtime: Runtime, issuer: TokenIssuer,
) -> None:
    runner = ScriptRunner(runtime.redis)
    await runner.load()
    wallet = Wallet(runtime, runner)
    async with supervised_server(config) as server:
        pids = await server.worker_pids(2)
        for pid in pids.values():  # both answer on the one port
            async with client_of(server.base_url, pid):
                pass
        # Each worker is in the operator view (its first heartbeat precedes its serving).
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            status = (await http.get("/api/admin/status", headers={
                "authorization": f"Bearer {issuer.mint('ops', 'admin')}"})).json()
        assert sorted((p["worker"], p["pid"]) for p in status["processes"]) == sorted(
            pids.items())
        await streams.go_live(runtime, "hall", "creator1", "two workers")
        senders = ["s0", "s1", "s2", "s3"]
        for user in senders:
            assert (await wallet.grant(user, 100, f"g-{user}", "admin")).ok
        clients = await _members_on_every_worker(
            server, issuer, "hall", senders + [f"v{i}" for i in range(20)])
        try:
            for i, (c, user) in enumerate(zip(clients, senders, strict=False)):
                tx = f"{user}-{i}"
                await c.send(SendGift(id=tx, room="hall", gift="rose", count=1, tx=tx))
                assert isinstance(await c.reply(tx), Ack)
            received = await asyncio.gather(*(c.wait_events(len(senders)) for c in clients))
            reference = [(e.seq, e.eid) for e in received[0]]
            for events in received:  # every member, on either worker, in one order
                assert [(e.seq, e.eid) for e in events] == reference
                assert sorted(e.sender for e in events if isinstance(e, GiftEvent)) == senders
            # /metrics of any worker is the whole server's: the connection gauge sums the
            # workers, the spend counter too (each spend counted once, where it was sent).
            for pid in pids.values():
                async with client_of(server.base_url, pid) as http:
                    metrics = await _metrics(http)
                assert metrics["giftwire_connections"] == [({}, 24.0)]
                assert metrics["giftwire_spends_total"] == [({"outcome": "ok"}, 4.0)]
            # The operator view shows each worker's own connections, the split of their gauges
            # (from each worker's heartbeat, at most a beat old).
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                split = {labels["pid"]: int(v) for labels, v in
                         (await _metrics(http))["giftwire_process_connections"] if v > 0}
                await _admin_shows(http, issuer, split)
            assert len(split) == 2 and sum(split.values()) == 24
            # Each worker runs a flusher, a consumer of the ledger group under a name of its own.
            names = set()
            for pid in pids.values():
                _, found = await server.wait_line(rf"ledger flusher (\S+-{pid}-\w+) started")
                names.add(found.group(1))
            assert len(names) == 2
        finally:
            await asyncio.gather(*(c.close() for c in clients))


async def test_a_killed_worker_is_restarted_and_serves_again(config: Config,
                                                             issuer: TokenIssuer) -> None:
    async with supervised_server(config) as server:
        pids = await server.worker_pids(2)
        mark = len(server.lines)
        os.kill(pids[1], signal.SIGKILL)
        await server.wait_line(rf"worker 1 \(pid {pids[1]}\) died \(killed by SIGKILL\); "
                               rf"restarting in {BACKOFF_S}s", mark)
        reborn = (await server.worker_pids(1, mark))[1]
        assert reborn not in pids.values()
        assert psutil.pid_exists(pids[0])  # the other worker was left alone
        async with client_of(server.base_url, reborn) as http:
            assert (await http.get("/readyz")).status_code == 200
        client = await open_client(server.ws_url, issuer.mint("v1", "viewer"))
        await client.close()


async def test_sigterm_drains_every_worker_then_the_supervisor_exits_0(
    config: Config, runtime: Runtime, issuer: TokenIssuer,
) -> None:
    async with supervised_server(config) as server:
        await streams.go_live(runtime, "hall", "creator1", "drain")
        clients = await _members_on_every_worker(server, issuer, "hall",
                                                 [f"v{i}" for i in range(24)])
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.wait_closed() for c in clients))
        assert set(codes) == {1001}
        for c in clients:
            assert len([m for m in c.messages if isinstance(m, GoingAway)]) == 1
        assert await asyncio.to_thread(server.process.wait, 40) == 0
        for slot in (0, 1):
            await server.wait_line(rf"worker {slot} \(pid \d+\) stopped \(exit status 0\)")
        await asyncio.gather(*(c.close() for c in clients))


async def test_workers_outlive_no_supervisor(config: Config) -> None:
    """A SIGKILLed supervisor cannot drain anyone: its workers notice and drain themselves."""
    async with supervised_server(config) as server:
        pids = await server.worker_pids(2)
        server.process.kill()
        procs = [psutil.Process(pid) for pid in pids.values()]
        _gone, alive = await asyncio.to_thread(psutil.wait_procs, procs, 40)
        assert alive == []
        await server.wait_line("the supervisor is gone; draining")


def test_worker_count_defaults_and_refusals() -> None:
    assert from_env({}).worker_count == 1  # development (loopback): one process to debug
    production = from_env({"GIFTWIRE_HOST": "0.0.0.0", "GIFTWIRE_JWT_SECRET": "x" * 40})
    assert production.worker_count == len(os.sched_getaffinity(0))
    assert dataclasses.replace(production, demo=True).worker_count == 1
    assert from_env({"GIFTWIRE_WORKERS": "3"}).worker_count == 3
    for bad in ({"GIFTWIRE_WORKERS": "-1"}, {"GIFTWIRE_WORKERS": "two"},
                {"GIFTWIRE_WORKERS": "2", "GIFTWIRE_DEMO": "1"}):
        with pytest.raises(ConfigError, match="GIFTWIRE_WORKERS"):
            from_env(bad)


def test_restart_backoff_doubles_while_workers_die_young_and_is_capped() -> None:
    assert backoff_s(0) == 0.0
    assert [backoff_s(n) for n in (1, 2, 3)] == [BACKOFF_S, 2 * BACKOFF_S, 4 * BACKOFF_S]
    assert backoff_s(100) == BACKOFF_MAX_S


def test_a_port_in_use_is_refused_once_with_exit_status_2(config: Config) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **config.to_env(), "GIFTWIRE_WORKERS": "2",
               "GIFTWIRE_PORT": str(port)}
        result = subprocess.run([sys.executable, "-m", "server", "serve"], env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker 0 started" not in result.stderr


async def test_embedded_services_are_started_once_by_the_supervisor(config: Config,
                                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = dataclasses.replace(config, data_dir=data)

    def ours() -> list[str]:
        """Processes running on the data directory: Postgres names it on its command line,
        Redis (which retitles itself) runs in it."""
        found = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            line = " ".join(p.info["cmdline"] or [])
            if str(data) in line or str(p.info["cwd"] or "").startswith(str(data)):
                found.append(line)
        return found

    async with supervised_server(cfg, embedded=True) as server:
        pids = await server.worker_pids(2)
        for pid in pids.values():
            async with client_of(server.base_url, pid) as http:
                assert (await http.get("/readyz")).json()["status"] == "ready"
        running = ours()
        assert len([c for c in running if "redis-server" in c]) == 1, running
        assert len([c for c in running if "postgres -D" in c]) == 1, running  # one postmaster
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.process.wait, 60) == 0
    assert ours() == []  # stopped with the supervisor
