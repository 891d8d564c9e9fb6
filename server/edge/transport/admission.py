"""What a connection may cost before it is trusted: the socket edge's limits, and the count of
connections per client address that have not yet said `hello` (or finished their first HTTP
request head).

Every number here is a setting (server/config.py, README); docs/protocol.md lists what a client
meets when it breaks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    # TCP accept -> request head complete (and upgraded, for /ws); then the session's own
    # hello timeout runs.
    handshake_timeout_s: float = 5.0
    http_max_header_bytes: int = 16 * 1024  # one request head, request line included
    http_max_headers: int = 64
    http_max_body_bytes: int = 64 * 1024  # any HTTP request's declared Content-Length
    max_pending_per_address: int = 64  # connections of one address before hello
    trusted_addresses: str = "127.0.0.1,::1"  # not capped: a local proxy or load tester
    ws_max_message_bytes: int = 64 * 1024
    ws_max_fragments: int = 16  # frames in one message
    ws_max_queued_messages: int = 64  # messages parsed ahead of the session
    ws_ping_rate_per_s: float = 2.0  # client pings (opcode 9) answered...
    ws_ping_burst: int = 10  # ...beyond this burst; more closes 1008
    writer_max_bytes: int = 256 * 1024  # bytes the client may leave unread in the transport

    @classmethod
    def from_config(cls, config: Any) -> EdgeLimits:
        return cls(**{name: getattr(config, name) for name in cls.__slots__})


class Admission:
    """Connections per client address not yet trusted; one per server process (the event loop is
    one thread, so plain counters)."""

    def __init__(self, max_per_address: int, trusted: str = "") -> None:
        self.max_per_address = max_per_address
        self.trusted = frozenset(a.strip() for a in trusted.split(",") if a.strip())
        self._pending: dict[str, int] = {}

    @classmethod
    def from_limits(cls, limits: EdgeLimits) -> Admission:
        return cls(limits.max_pending_per_address, limits.trusted_addresses)

    def admit(self, address: str) -> bool:
        if address in self.trusted:
            return True
        count = self._pending.get(address, 0)
        if count >= self.max_per_address:
            return False
        self._pending[address] = count + 1
        return True

    def release(self, address: str) -> None:
        if address in self.trusted:
            return
        count = self._pending.get(address, 0) - 1
        if count > 0:
            self._pending[address] = count
        else:
            self._pending.pop(address, None)

    def pending(self, address: str) -> int:
        return self._pending.get(address, 0)
