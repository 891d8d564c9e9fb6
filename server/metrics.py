"""Prometheus metrics. One registry per app, so several apps in one process (tests) never clash.

Under a supervisor (`--workers N`, server/supervisor/) every worker runs with
`PROMETHEUS_MULTIPROC_DIR` set to the run's directory: prometheus_client then keeps each value in
a file of that directory, and `/metrics` of any worker reads them all (`MultiProcessCollector`):
counters and histograms are summed over the workers (the dead ones' counts included, so totals
never go back), gauges combined as each one's `multiprocess_mode` says.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # livesum: the server's total over its live workers; liveall: one series per worker pid
        # (without workers, both are this process's count).
        self.connections = Gauge("giftwire_connections", "Open WebSocket connections",
                                 multiprocess_mode="livesum", registry=r)
        self.process_connections = Gauge(
            "giftwire_process_connections", "Open WebSocket connections of each worker process",
            multiprocess_mode="liveall", registry=r,
        )
        self.rooms = Gauge("giftwire_rooms", "Rooms with members, summed over the processes",
                           multiprocess_mode="livesum", registry=r)
        self.events = Counter(
            "giftwire_room_events_total", "Room events received from the broker", registry=r
        )
        self.deliveries = Counter(
            "giftwire_deliveries_total", "Events handed to connections", registry=r
        )
        self.fanout_seconds = Histogram(
            "giftwire_fanout_seconds",
            "From an event's arrival from the broker to its frames being written",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.lua_seconds = Histogram(
            "giftwire_lua_seconds", "Lua script round trip, by script", ["script"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.spends = Counter(
            "giftwire_spends_total", "Spend attempts by outcome", ["outcome"], registry=r
        )
        self.slow_disconnects = Counter(
            "giftwire_slow_disconnects_total", "Connections closed for exceeding their buffer",
            registry=r,
        )
        self.protocol_errors = Counter(
            "giftwire_protocol_errors_total", "Error frames sent, by code", ["code"], registry=r
        )
        self.http_problems = Counter(
            "giftwire_http_problems_total", "HTTP problem responses, by status and code",
            ["status", "code"], registry=r,
        )
        self.edge_closes = Counter(
            "giftwire_edge_closes_total",
            "WebSocket connections the socket edge closed for breaking a limit, by close code",
            ["code"], registry=r,
        )
        # Every worker's flusher measures the same streams: the largest live reading.
        self.flusher_lag = Gauge(
            "giftwire_flusher_lag", "Ledger entries in Redis not yet in Postgres",
            multiprocess_mode="livemax", registry=r,
        )
        self.flusher_lag_seconds = Gauge(
            "giftwire_flusher_lag_seconds",
            "Age of the oldest ledger entry in Redis not yet in Postgres",
            multiprocess_mode="livemax", registry=r,
        )
        self.flushed = Counter(
            "giftwire_ledger_flushed_total", "Ledger entries written to Postgres", registry=r
        )
        # Hub (server/hub/hub.py, server/hub/broker_redis.py).
        self.pubsub_resubscribes = Counter(
            "giftwire_pubsub_resubscribes_total",
            "Times the pub/sub connection was re-established with every room re-subscribed",
            registry=r,
        )
        self.hub_recoveries = Counter(
            "giftwire_hub_recoveries_total",
            "Room history fetches after pub/sub lost events (reconnect or a seq gap)",
            registry=r,
        )
        self.room_epochs = Counter(
            "giftwire_room_epoch_changes_total",
            "Rooms seen starting a new epoch (Redis restarted, failed over or lost them): gap told",
            registry=r,
        )

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(exposed_registry(self.registry)),
                        media_type=CONTENT_TYPE_LATEST)


def exposed_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What `/metrics` shows: this process's registry, or every worker's under a supervisor."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return own
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)
    return combined
