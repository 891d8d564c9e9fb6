"""Lua scripts on a Redis Cluster: one streaming pipeline per master, each call routed by its slot.

The same interface as `server.storage.scripts.ScriptRunner` (the single-Redis runner): `call`,
`submit`, `load`, `start`, `stop`. Each master gets its own `RespConnection`; a call goes to the
master that serves the slot of its first key (all of a script's KEYS share one slot,
tests/test_keys.py) and is batched with the other calls to that master made in the same
event-loop iteration.

What happens when the cluster answers otherwise:
- `MOVED slot host:port`: the call did not run. It is resent to the named node and the slot map
  is refreshed (a resharding or a failover changed the owner).
- `ASK slot host:port`: the call did not run (its slot is being migrated). It is resent once to
  the named node, preceded by `ASKING`.
- `TRYAGAIN` (a migration in progress) and `CLUSTERDOWN` (no master serves the slot, e.g. during
  a failover): the call did not run; it is resent after a backoff and a slot map refresh.
- `NOSCRIPT`: resent as EVAL with the source, as the single-Redis runner does.
- The connection lost (or the watchdog gave up on it) with the call in flight: the call may have
  run. It is resent only when a second run changes nothing: the scripts idempotent by their
  transaction id (`IDEMPOTENT`) and the read-only ones (`READ_ONLY`). Every other call fails with
  `ConnectionError`, which the caller answers `unavailable` (the client decides whether to retry).
A call that was queued but never written can always be rerouted. Retries back off (50 ms doubling
to 1 s) and stop `retry_window_s` after the call was submitted, failing it with `ConnectionError`:
a failover takes about the cluster's `cluster-node-timeout` plus an election.

Replication is asynchronous: a write acknowledged by a master that is killed before its replica
copied it is lost with that master (Redis Cluster's documented window, milliseconds on a LAN).
A spend lost this way lost its debit, its ledger entry and its room event together (one script),
so balances and the ledger stay consistent; docs/scaling.md, "Failover", says what a client sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio.cluster import RedisCluster

from server.storage.cluster.slots import Address, SlotMap, SlotMapUnavailable
from server.storage.keys import cluster_slot
from server.storage.resp import RespConnection
from server.storage.scripts import (
    MAX_PENDING,
    LuaScript,
    ScriptCalls,
    ScriptError,
    _pack_body,
    load_scripts,
)

log = logging.getLogger("giftwire.scripts")

# Safe to run twice: a second run of the same transaction id returns the first result and changes
# nothing (spend, deposit, redeem, reverse, credit: their tx records; room_event: the room's
# published set), or the script only reads.
IDEMPOTENT = frozenset({"spend", "deposit", "redeem", "reverse", "credit", "room_event"})
READ_ONLY = frozenset({"credited", "room_since"})
RESENDABLE = IDEMPOTENT | READ_ONLY

RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
_ASKING = b"*1\r\n$6\r\nASKING\r\n"


class _AskingReply:
    """The item standing for an ASKING command's reply in a connection's FIFO."""


ASKING_REPLY = _AskingReply()


@dataclass(slots=True, eq=False)
class _Call:
    script: LuaScript
    slot: int
    body: bytes
    size: int
    future: asyncio.Future[Any]
    deadline: float
    by_sha: bool = True
    target: Address | None = None  # one send to this node (MOVED, ASK), then the map again
    asking: bool = False


@dataclass(slots=True, eq=False)
class _Node:
    address: Address
    conn: RespConnection | None = None
    queue: list[_Call] = field(default_factory=list)
    connecting: asyncio.Task[None] | None = None


def _redirect_target(message: str) -> Address:
    # "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
    host, _, port = message.split()[2].rpartition(":")
    return host or "127.0.0.1", int(port)


class ClusterScriptRunner(ScriptCalls):
    def __init__(
        self,
        redis: RedisCluster,
        scripts: dict[str, LuaScript] | None = None,
        *,
        on_latency: Callable[[str, float], None] | None = None,
        timeout_s: float = 10.0,
        retry_window_s: float = 20.0,
        name: str = "giftwire-scripts",
        max_pending: int = MAX_PENDING,
    ) -> None:
        super().__init__(redis, scripts if scripts is not None else load_scripts(sharded=True),
                         on_latency)
        self._slots: SlotMap | None = None
        self._nodes: dict[Address, _Node] = {}
        self._parked: list[_Call] = []
        self._parked_wanted = asyncio.Event()
        self._pending = 0
        self._replied = False  # a reply arrived since the retrier last ran (backoff reset)
        self._timeout_s = timeout_s
        self._retry_window_s = retry_window_s
        self._name = name
        self._max_pending = max_pending
        self.reconnects = 0
        self.resent = 0  # calls resent after a redirect, a cluster error or a lost connection

    @property
    def in_flight(self) -> int:
        return sum(n.conn.in_flight for n in self._nodes.values() if n.conn is not None)

    @property
    def slots(self) -> SlotMap:
        assert self._slots is not None, "load() first, or a call parked until the map is read"
        return self._slots

    async def _read_map(self) -> SlotMap:
        if self._slots is None:
            await self._redis.initialize()  # redis-py's client knows the nodes once initialized
            self._slots = SlotMap.of(self._redis, name=f"{self._name}-slots")
        await self._slots.refresh()
        return self._slots

    async def load(self) -> None:
        """Register every script on every master (redis-py sends SCRIPT LOAD to all of them) and
        read the slot map."""
        await self._register()
        await self._read_map()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._retrier(), name="lua-cluster-retrier"),
                asyncio.create_task(self._watchdog(), name="lua-cluster-watchdog"),
            ]

    async def stop(self) -> None:
        await self._cancel_tasks()
        stopped = ConnectionError("script runner stopped")
        for node in self._nodes.values():
            if node.connecting is not None:
                node.connecting.cancel()
            if node.conn is not None:
                node.conn.close()  # fails (or parks) the calls in flight
                await node.conn.wait_closed()
        for node in self._nodes.values():
            self._fail_all(node.queue, stopped)
            node.queue = []
        self._fail_all(self._parked, stopped)
        self._parked = []

    def submit(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        script = self._scripts[name]
        if self.observer is not None:
            self.observer(name, keys)
        if not self._tasks:  # not started (CLI tools, tests): redis-py routes one call
            return asyncio.ensure_future(self._direct(script, keys, args))
        if self._pending >= self._max_pending:
            raise ConnectionError("the script runner is overloaded; retry shortly")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending += 1
        call = _Call(script, cluster_slot(keys[0]) if keys else 0, _pack_body(keys, args),
                     3 + len(keys) + len(args), future, time.monotonic() + self._retry_window_s)
        self._route(call)
        return future

    # -- routing --------------------------------------------------------------------------------

    def _route(self, call: _Call) -> None:
        address = call.target or (self._slots.owner(call.slot) if self._slots else None)
        call.target = None
        if address is None:  # no master known for the slot (or no map yet): after a refresh
            self._park(call)
            return
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = _Node(address)
        node.queue.append(call)
        self._schedule_flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        for node in self._nodes.values():
            if not node.queue:
                continue
            conn = node.conn
            if conn is None or not conn.is_open:
                if node.connecting is None:
                    node.connecting = asyncio.create_task(self._connect(node),
                                                          name="lua-cluster-connect")
                continue
            batch, node.queue = node.queue, []
            items: list[Any] = []
            payload: list[bytes] = []
            for call in batch:
                if call.asking:
                    call.asking = False
                    items.append(ASKING_REPLY)
                    payload.append(_ASKING)
                items.append(call)
                payload.append(self._pack(call))
            conn.send(b"".join(payload), items)

    async def _connect(self, node: _Node) -> None:
        try:
            node.conn = await RespConnection.open(
                self.slots.endpoint(node.address), self._on_reply, self._on_lost,
                name=self._name, timeout_s=min(self._timeout_s, 5.0))
            self.reconnects += 1
        except OSError as exc:  # refused, timed out, AUTH refused: a node down or gone
            log.warning("cannot connect to Redis node %s:%d for scripts: %s", *node.address, exc)
            queued, node.queue = node.queue, []
            for call in queued:  # never written: safe to route again, whatever the script
                self._park(call)
        finally:
            node.connecting = None
        if node.queue:
            self._flush()

    # -- replies --------------------------------------------------------------------------------

    def _on_reply(self, call: Any, reply: Any, elapsed: float) -> None:
        if call is ASKING_REPLY:
            return
        assert isinstance(call, _Call)
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith(("MOVED ", "ASK ")):
                call.target = _redirect_target(message)
                call.asking = message.startswith("ASK ")
                self.slots.learn(call.target)
                if not call.asking:
                    self._refresh_soon()
                self._resend(call)
                return
            if message.startswith(("TRYAGAIN", "CLUSTERDOWN")):
                self._park(call)
                return
            if call.by_sha and message.startswith("NOSCRIPT"):
                call.by_sha = False  # it did not run: resend it with the source
                self._resend(call)
                return
            self._observe(call.script.name, elapsed)
            self._settle(call, exc=ScriptError(message))
            return
        self._replied = True
        self._observe(call.script.name, elapsed)
        self._settle(call, reply)

    def _on_lost(self, call: Any, exc: Exception) -> None:
        if call is ASKING_REPLY:
            return
        assert isinstance(call, _Call)
        if call.script.name in RESENDABLE and not call.future.done():
            self._park(call)  # may have run: resent only because a second run changes nothing
        else:
            self._settle(call, exc=exc)

    def _resend(self, call: _Call) -> None:
        if time.monotonic() > call.deadline:
            self._settle(call, exc=ConnectionError(
                f"{call.script.name}: the cluster kept redirecting it; retry shortly"))
            return
        self.resent += 1
        self._route(call)

    def _settle(self, call: _Call, result: Any = None, *, exc: Exception | None = None) -> None:
        self._pending -= 1
        if call.future.done():
            return  # the caller gave up (cancelled); the script may still have run
        if exc is not None:
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)

    def _fail_all(self, calls: list[_Call], exc: Exception) -> None:
        for call in calls:
            self._settle(call, exc=exc)

    # -- retries --------------------------------------------------------------------------------

    def _park(self, call: _Call) -> None:
        self._parked.append(call)
        self._parked_wanted.set()

    def _refresh_soon(self) -> None:
        task = asyncio.ensure_future(self.slots.refresh())
        task.add_done_callback(_log_refresh_failure)

    async def _retrier(self) -> None:
        """Resends parked calls after a backoff and a slot map refresh (a failover in progress:
        the map changes once a replica is promoted)."""
        delay = RETRY_MIN_S
        while True:
            await self._parked_wanted.wait()
            await asyncio.sleep(delay)  # backoff between attempts, not synchronisation
            try:
                await self._read_map()
            except (SlotMapUnavailable, OSError) as exc:
                log.warning("%s", exc)
            parked, self._parked = self._parked, []
            self._parked_wanted.clear()
            now = time.monotonic()
            for call in parked:
                if call.future.done():
                    self._settle(call)  # the caller gave up: only counted out
                elif now > call.deadline:
                    self._settle(call, exc=ConnectionError(
                        f"{call.script.name}: no cluster node served it within "
                        f"{self._retry_window_s:.0f}s; retry shortly"))
                else:
                    self.resent += 1
                    self._route(call)
            if self._replied:
                delay, self._replied = RETRY_MIN_S, False
            else:
                delay = min(delay * 2, RETRY_MAX_S)

    def _connections(self) -> Iterator[tuple[str, RespConnection]]:
        for node in self._nodes.values():
            if node.conn is not None:
                yield f" from {node.address[0]}:{node.address[1]}", node.conn


def _log_refresh_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("slot map refresh failed: %s", exc)
