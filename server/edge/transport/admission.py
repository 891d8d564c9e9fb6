"""What a connection may cost before it is trusted: the socket edge's limits, the count of
connections per client address that have not yet said `hello` (or finished their first HTTP
request head), and the rate at which one address may open connections.

Every number here is a setting (server/config.py, README); docs/protocol.md lists what a client
meets when it breaks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.edge.ratelimit import UserBuckets

# Told the close code (1002, 1007, 1008, 1009) of each connection closed for a broken limit.
Violation = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    # TCP accept -> request head complete (and upgraded, for /ws); then the session's own
    # hello timeout runs.
    handshake_timeout_s: float = 5.0
    http_max_header_bytes: int = 16 * 1024  # one request head, request line included
    http_max_headers: int = 64
    http_max_body_bytes: int = 64 * 1024  # any HTTP request's declared Content-Length
    max_pending_per_address: int = 64  # connections of one address before hello
    # New connections per second of one address, beyond a burst: a reconnect storm (a client
    # that is closed for a broken limit and comes straight back) is cut at the accept.
    accept_rate_per_s: float = 50.0
    accept_burst: int = 200
    # Accept tokens an address loses when one of its WebSocket connections is closed for
    # breaking a limit of the edge: its flood's reconnect storm is admitted this much slower.
    edge_violation_penalty: int = 10
    # A refused connection is held unread this long before its reset, at most this many at once.
    refused_hold_s: float = 1.0
    refused_hold_max: int = 1024
    # HTTP requests per second of one address, beyond a burst: refused 429 at the gate, before
    # any parsing, auth or body read (the API's own per-user limits come after this).
    http_rate_per_s: float = 100.0
    http_burst: int = 200
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

    def __init__(self, max_per_address: int, trusted: str = "", accept_rate_per_s: float = 1e9,
                 accept_burst: int = 10**9, http_rate_per_s: float = 1e9,
                 http_burst: int = 10**9, hold_max: int = 0, violation_penalty: int = 0
                 ) -> None:
        self.max_per_address = max_per_address
        self.violation_penalty = violation_penalty
        self.hold_max = hold_max
        self.held = 0  # refused connections being held (gate.py)
        self._held_by: dict[str, int] = {}
        self.trusted = frozenset(a.strip() for a in trusted.split(",") if a.strip())
        self._pending: dict[str, int] = {}
        self._accepts = UserBuckets(accept_rate_per_s, accept_burst)
        self._requests = UserBuckets(http_rate_per_s, http_burst)

    @classmethod
    def from_limits(cls, limits: EdgeLimits) -> Admission:
        return cls(limits.max_pending_per_address, limits.trusted_addresses,
                   limits.accept_rate_per_s, limits.accept_burst, limits.http_rate_per_s,
                   limits.http_burst, limits.refused_hold_max, limits.edge_violation_penalty)

    def admit(self, address: str) -> bool:
        if address in self.trusted:
            return True
        count = self._pending.get(address, 0)
        if count >= self.max_per_address or self._accepts.take(address):
            return False
        self._pending[address] = count + 1
        return True

    def penalise(self, address: str, *, http: bool = False) -> None:
        """`violation_penalty` tokens off the address's accept budget (a WebSocket closed for a
        broken limit: `violated`) or, `http`, its HTTP request budget (a body the API could not
        decode: server/web/body.py)."""
        if address not in self.trusted and self.violation_penalty:
            (self._requests if http else self._accepts).drain(address, self.violation_penalty)

    def hold(self, address: str) -> bool:
        """A refused connection may be held (unread, until its reset) rather than reset now: up
        to `hold_max` in all and `max_per_address` of one address, so one address's storm of
        connections it closes at once (holding those gains nothing) neither pays a hold per
        connection nor takes every other address's holds."""
        count = self._held_by.get(address, 0)
        if self.held >= self.hold_max or count >= self.max_per_address:
            return False
        self.held += 1
        self._held_by[address] = count + 1
        return True

    def unhold(self, address: str) -> None:
        self.held -= 1
        _decrement(self._held_by, address)

    def request(self, address: str) -> int:
        """An HTTP request of this address: 0 if allowed, else milliseconds until it would be."""
        return 0 if address in self.trusted else self._requests.take(address)

    def release(self, address: str) -> None:
        if address not in self.trusted:
            _decrement(self._pending, address)

    def pending(self, address: str) -> int:
        return self._pending.get(address, 0)


def violated(admission: Admission | None, client: tuple[str, int] | None, code: int,
             told: Violation | None) -> None:
    """A WebSocket connection of `client` was closed with `code` for breaking a limit of the edge
    (a ping, fragment or message-size flood, invalid UTF-8, a malformed frame): its address pays
    `edge_violation_penalty` accept tokens, and `told` hears the code (the server counts it for
    the operator view). A flood that is cut and reconnects at once (issue 10's WebSocket floods:
    ~65 full upgrades a second at the accept rate alone, each a new session) then gets about
    rate / (1 + penalty) connections a second once its burst is spent; an honest client breaks
    none of these limits."""
    if admission is not None and client is not None:
        admission.penalise(client[0])
    if told is not None:
        told(code)


def _decrement(counts: dict[str, int], address: str) -> None:
    """One fewer for `address`; an address at zero is dropped, so the map holds only live ones."""
    count = counts.get(address, 0) - 1
    if count > 0:
        counts[address] = count
    else:
        counts.pop(address, None)
