"""The gift catalog and the coin packages: shipped as `server/money/data/catalog.json`.

The spend script prices every gift itself from a copy of the catalog on the wallet's shard
(`keys.catalog(shard)`), so a client never names a price and a spend stays in one cluster slot.
`publish` writes that copy to every shard at start-up; each shard's copy is replaced atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from protocol.limits import IDENTIFIER_PATTERN, MAX_GIFT_ID_LEN
from server.storage.keys import Keys

CATALOG_PATH = Path(__file__).with_name("data") / "catalog.json"
_ID = re.compile(IDENTIFIER_PATTERN)


class CatalogError(ValueError):
    """The catalog file is malformed."""


@dataclass(frozen=True, slots=True)
class Gift:
    id: str
    name: str
    coins: int
    streakable: bool
    animation: str
    tier: int

    def redis_value(self) -> str:
        # What spend.lua parses: "<coins> <streakable 0|1>".
        return f"{self.coins} {int(self.streakable)}"


@dataclass(frozen=True, slots=True)
class CoinPackage:
    id: str
    coins: int
    price_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class Catalog:
    gifts: dict[str, Gift]
    packages: dict[str, CoinPackage]

    def to_json(self) -> dict[str, Any]:
        return {
            "gifts": [asdict(g) for g in self.gifts.values()],
            "packages": [asdict(p) for p in self.packages.values()],
        }


def _ident(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value) or len(value) > MAX_GIFT_ID_LEN:
        raise CatalogError(f"{what}: {value!r} is not a valid identifier")
    return value


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or value < 1:
        raise CatalogError(f"{what}: {value!r} must be a positive integer")
    return value


def parse_catalog(data: dict[str, Any]) -> Catalog:
    gifts: dict[str, Gift] = {}
    for raw in data.get("gifts", []):
        gid = _ident(raw.get("id"), "gift id")
        if gid in gifts:
            raise CatalogError(f"gift {gid} is listed twice")
        gifts[gid] = Gift(
            id=gid,
            name=str(raw["name"]),
            coins=_positive(raw.get("coins"), f"gift {gid} coins"),
            streakable=bool(raw.get("streakable", False)),
            animation=str(raw.get("animation", gid)),
            tier=int(raw.get("tier", 1)),
        )
    packages: dict[str, CoinPackage] = {}
    for raw in data.get("packages", []):
        pid = _ident(raw.get("id"), "package id")
        if pid in packages:
            raise CatalogError(f"package {pid} is listed twice")
        packages[pid] = CoinPackage(
            id=pid,
            coins=_positive(raw.get("coins"), f"package {pid} coins"),
            price_cents=_positive(raw.get("price_cents"), f"package {pid} price"),
            currency=str(raw.get("currency", "USD")),
        )
    if not gifts:
        raise CatalogError("the catalog has no gifts")
    return Catalog(gifts, packages)


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    try:
        return parse_catalog(json.loads(path.read_text()))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: {exc}") from None


async def publish(redis: Redis, keys: Keys, catalog: Catalog) -> None:
    """Replace every shard's copy of the catalog; each replacement is one MULTI (atomic)."""
    mapping = {g.id: g.redis_value() for g in catalog.gifts.values()}
    for shard in range(keys.wallet_shards):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.catalog(shard))
            pipe.hset(keys.catalog(shard), mapping=mapping)
            await pipe.execute()
