"""Configuration: one frozen dataclass, read once from the environment.

`REDIS_URL` and `DATABASE_URL` keep their conventional names so platforms that inject them work
unchanged; everything else is prefixed `GIFTWIRE_`. Unset URLs mean "start the embedded servers".
The README's configuration table lists every field; `tests/test_config.py` keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.limits import HELLO_TIMEOUT_S, MIN_IDLE_TIMEOUT_HEARTBEATS

# Published development defaults: a server outside development mode refuses to start with either.
DEV_SECRET = "giftwire-development-secret-change-me-in-production"
DEV_RECEIPT_SECRET = "giftwire-sandbox-receipts"
ENVIRONMENTS = frozenset({"auto", "development", "production"})
MAX_WORKERS = 256


class ConfigError(ValueError):
    """An environment variable holds a value giftwire cannot use."""


@dataclass(frozen=True, slots=True)
class Config:
    # Where the servers are. None: start embedded Redis/Postgres under data_dir.
    redis_url: str | None = None
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".giftwire")
    # Every Redis key and channel starts with this, so several deployments (or tests) share a Redis.
    key_prefix: str = "gw:"
    # Postgres schema holding giftwire's tables (tests use one schema each).
    db_schema: str = "giftwire"
    # Redis Cluster mode (docs/scaling.md): also chosen by a `redis+cluster://host:port` URL.
    # Needs Redis >= 7.0 (sharded pub/sub); any node of the cluster seeds the slot map.
    redis_cluster: bool = False
    # Ledger-stream shards: wallets hash onto them; each shard is one Redis Cluster slot.
    wallet_shards: int = 16
    # The shared Redis client's pool (commands outside the Lua script runner and pub/sub): at
    # most this many connections; a command finding all busy waits up to `redis_pool_wait_s`,
    # then is answered `unavailable` (HTTP 503 with Retry-After).
    redis_max_connections: int = 64
    redis_pool_wait_s: float = 5.0

    # Security. `env`: development | production | auto (development only while listening on a
    # loopback address): see `development` and `check_deployment`.
    env: str = "auto"
    jwt_secret: str = DEV_SECRET
    sandbox_receipt_secret: str = DEV_RECEIPT_SECRET
    token_ttl_s: int = 24 * 3600

    # Money rules.
    diamonds_per_coin_num: int = 1
    diamonds_per_coin_den: int = 1
    redeem_min_diamonds: int = 1000
    daily_spend_limit: int = 0  # coins per viewer per UTC day; 0 = no limit

    # Ledger flusher.
    run_flusher: bool = True
    flush_batch: int = 1000
    flush_block_ms: int = 200
    flush_claim_idle_ms: int = 30_000

    # Real-time hub.
    # The flush's latency budget: the most a busy loop defers a flush (server/edge/writer.py
    # FlushScheduler); an idle loop flushes on its next turn.
    writer_window_ms: float = 10.0
    writer_max_bytes: int = 256 * 1024
    # SO_SNDBUF of accepted WebSocket sockets (Linux doubles it): caps the kernel's autotuned
    # send buffer so a stalled reader reaches `writer_max_bytes` (and 4008) soon; 0 = OS default.
    socket_sndbuf: int = 64 * 1024
    history_maxlen: int = 1000
    history_max_age_s: int = 3600
    heartbeat_s: int = 20
    # Told to clients in `welcome.idle_timeout_s`; at least MIN_IDLE_TIMEOUT_HEARTBEATS beats.
    idle_timeout_s: int = 60
    hello_timeout_s: int = HELLO_TIMEOUT_S
    # WebSocket-level (opcode 9) keepalive: a ping every interval, close 1011 when its pong is
    # later than the timeout (docs/protocol.md section 3).
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    max_rooms_per_connection: int = 8
    rate_per_s: float = 20.0
    rate_burst: int = 40
    combo_timeout_ms: int = 3000
    presence_ttl_s: int = 30

    # Socket edge (server/edge/transport/; docs/protocol.md, "Limits of the socket edge"): what a
    # client may cost before and after it is trusted.
    handshake_timeout_s: float = 5.0
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 64
    http_max_body_bytes: int = 16 * 1024  # also read by the HTTP API (server/web/body.py)
    max_pending_per_address: int = 64
    accept_rate_per_s: float = 50.0
    accept_burst: int = 200
    edge_violation_penalty: int = 10
    # A connection refused at the accept is held this long, unread, before it is reset: a
    # reconnect storm then waits instead of costing an accept every few microseconds. At most
    # `refused_hold_max` are held at once (per process); past that they are reset at once.
    refused_hold_s: float = 1.0
    refused_hold_max: int = 1024
    http_rate_per_s: float = 100.0
    http_burst: int = 200
    trusted_addresses: str = "127.0.0.1,::1"
    ws_max_message_bytes: int = 64 * 1024
    ws_max_fragments: int = 16
    ws_max_queued_messages: int = 64
    ws_ping_rate_per_s: float = 2.0
    ws_ping_burst: int = 10

    # Lifecycle. `workers`: server processes on the one port (server/supervisor/); 0 = automatic,
    # see `worker_count`.
    workers: int = 0
    drain_timeout_s: float = 10.0
    reconnect_hint_ms: int = 1000
    log_level: str = "INFO"
    log_json: bool = False
    demo: bool = False
    demo_bots: int = 3
    # Seconds between two demo bot gifts, across all bots (server/web/demo.py, Pacer).
    demo_bot_pace_s: float = 8.0

    # Extra settings not read from the environment (tests inject them).
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def development(self) -> bool:
        """Development mode: development defaults and sandbox receipts are accepted. `auto` is
        development only on a loopback address, so `make run`, the tests and the load tester
        work on a fresh machine while anything reachable from outside is production."""
        if self.env == "auto":
            return _is_loopback(self.host)
        return self.env == "development"

    @property
    def worker_count(self) -> int:
        """Worker processes to run: `workers`, or when 0 one in development or demo mode (one
        process to debug; the demo's bots must run once) and one per core otherwise."""
        if self.workers:
            return self.workers
        if self.development or self.demo:
            return 1
        return usable_cores()

    @property
    def cluster(self) -> bool:
        """Redis Cluster mode: `redis_cluster` or a `redis+cluster://` (`rediss+...`) URL."""
        return self.redis_cluster or is_cluster_url(self.redis_url)

    @property
    def embedded(self) -> bool:
        return self.redis_url is None or self.database_url is None

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces this config in a child process."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            name = ENV_NAMES[f.name]
            env[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env


# Field name -> environment variable.
ENV_NAMES: dict[str, str] = {
    f.name: ("REDIS_URL" if f.name == "redis_url" else
             "DATABASE_URL" if f.name == "database_url" else
             "GIFTWIRE_" + f.name.upper())
    for f in dataclasses.fields(Config)
    if f.name != "extra"
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str, default: object) -> object:
    kind = type(default)
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    return raw


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str | None) -> bool:
    return url is not None and url.partition("://")[0] in CLUSTER_SCHEMES


def plain_redis_url(url: str) -> str:
    """`redis+cluster://h:p/0` as the `redis://h:p/0` that redis-py's clients read (the first
    node of a list)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    first = hosts.split(",")[0]
    return CLUSTER_SCHEMES.get(scheme, scheme) + sep + auth + at + first + slash + path


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The nodes a cluster URL names: `redis+cluster://h1:p1,h2:p2/0` (any one reachable node
    is enough to find the others; naming several survives the first one being down)."""
    netloc = url.partition("://")[2].partition("/")[0].rpartition("@")[2]
    seeds = []
    for hostport in netloc.split(","):
        host, _, port = hostport.rpartition(":")
        seeds.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
    return seeds


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's cpuset, `taskset`),
    which `os.cpu_count()` ignores."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable


def check_deployment(c: Config) -> None:
    """Outside development mode, refuse the published development secrets (`ConfigError`): a
    token signed with the default JWT secret or a receipt signed with the default receipt secret
    would otherwise be accepted by anyone who has read this file."""
    if c.development:
        return
    why = (f"GIFTWIRE_ENV={c.env}" if c.env != "auto"
           else f"GIFTWIRE_HOST={c.host} is not a loopback address")
    for var, value, default in (("GIFTWIRE_JWT_SECRET", c.jwt_secret, DEV_SECRET),
                                ("GIFTWIRE_SANDBOX_RECEIPT_SECRET", c.sandbox_receipt_secret,
                                 DEV_RECEIPT_SECRET)):
        if value == default:
            raise ConfigError(f"{var} is the published development default; production mode "
                              f"({why}) needs a secret of your own (or GIFTWIRE_ENV=development)")


def from_env(environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    defaults = Config()
    values: dict[str, Any] = {}
    for fname, var in ENV_NAMES.items():
        if var not in env:
            continue
        raw = env[var]
        default = getattr(defaults, fname)
        if default is None:  # the URLs: empty means unset
            values[fname] = raw or None
        else:
            values[fname] = _convert(var, raw, default)
    config = Config(**values)
    _validate(config)
    return config


def validate(c: Config) -> Config:
    """`c` when every value is usable (after command-line overrides); else `ConfigError`."""
    _validate(c)
    return c


def _validate(c: Config) -> None:
    if not 1 <= c.port <= 65535:
        raise ConfigError(f"GIFTWIRE_PORT={c.port} is out of range")
    if c.wallet_shards < 1:
        raise ConfigError("GIFTWIRE_WALLET_SHARDS must be at least 1")
    if c.diamonds_per_coin_num < 0 or c.diamonds_per_coin_den < 1:
        raise ConfigError("diamond share must be num >= 0 and den >= 1")
    if c.writer_max_bytes < 1024:
        raise ConfigError("GIFTWIRE_WRITER_MAX_BYTES must be at least 1024")
    if c.redis_max_connections < 1:
        raise ConfigError("GIFTWIRE_REDIS_MAX_CONNECTIONS must be at least 1")
    if c.redis_pool_wait_s <= 0:
        raise ConfigError("GIFTWIRE_REDIS_POOL_WAIT_S must be positive")
    if c.http_max_body_bytes < 1024:
        raise ConfigError("GIFTWIRE_HTTP_MAX_BODY_BYTES must be at least 1024")
    if c.refused_hold_max < 0:
        raise ConfigError("GIFTWIRE_REFUSED_HOLD_MAX must be 0 (no hold) or positive")
    if c.edge_violation_penalty < 0:
        raise ConfigError("GIFTWIRE_EDGE_VIOLATION_PENALTY must be 0 (none) or positive")
    if c.socket_sndbuf < 0:
        raise ConfigError("GIFTWIRE_SOCKET_SNDBUF must be 0 (OS default) or positive")
    for name in ("handshake_timeout_s", "http_max_header_bytes", "http_max_headers",
                 "http_max_body_bytes", "max_pending_per_address", "accept_rate_per_s",
                 "accept_burst", "refused_hold_s", "http_rate_per_s", "http_burst",
                 "ws_max_message_bytes",
                 "ws_max_fragments", "ws_max_queued_messages", "ws_ping_burst"):
        if getattr(c, name) <= 0:
            raise ConfigError(f"{ENV_NAMES[name]} must be positive")
    if not 0 <= c.workers <= MAX_WORKERS:
        raise ConfigError(f"GIFTWIRE_WORKERS={c.workers} must be 0 (automatic) to {MAX_WORKERS}")
    if c.workers > 1 and c.demo:
        # Every worker would seed the demo room and run its own gift bots.
        raise ConfigError("GIFTWIRE_DEMO runs one worker: GIFTWIRE_WORKERS must be 0 or 1")
    if c.ws_ping_rate_per_s < 0:
        raise ConfigError("GIFTWIRE_WS_PING_RATE_PER_S must be 0 or positive")
    if len(c.jwt_secret.encode()) < 32:
        raise ConfigError("GIFTWIRE_JWT_SECRET must be at least 32 bytes (HS256 key strength)")
    if c.demo_bot_pace_s <= 0:
        raise ConfigError("GIFTWIRE_DEMO_BOT_PACE_S must be above 0")
    if c.heartbeat_s < 1 or c.hello_timeout_s < 1:
        raise ConfigError("GIFTWIRE_HEARTBEAT_S and GIFTWIRE_HELLO_TIMEOUT_S must be at least 1")
    if c.idle_timeout_s < MIN_IDLE_TIMEOUT_HEARTBEATS * c.heartbeat_s:
        # Clients ping every heartbeat_s; a shorter idle timeout would close them on one late ping.
        raise ConfigError(
            f"GIFTWIRE_IDLE_TIMEOUT_S must be at least {MIN_IDLE_TIMEOUT_HEARTBEATS} x "
            "GIFTWIRE_HEARTBEAT_S"
        )
    if c.ws_ping_interval_s <= 0 or c.ws_ping_timeout_s <= 0:
        raise ConfigError("GIFTWIRE_WS_PING_INTERVAL_S and GIFTWIRE_WS_PING_TIMEOUT_S must be > 0")
    if c.env not in ENVIRONMENTS:
        allowed = ", ".join(sorted(ENVIRONMENTS))
        raise ConfigError(f"GIFTWIRE_ENV={c.env!r} must be one of {allowed}")
    if c.redis_cluster and c.redis_url is None:
        raise ConfigError("GIFTWIRE_REDIS_CLUSTER needs REDIS_URL (a node of the cluster): "
                          "the embedded Redis is a single 6.2 server")
    if not c.db_schema.isidentifier():
        raise ConfigError(f"GIFTWIRE_DB_SCHEMA={c.db_schema!r} is not a plain identifier")
