"""A gift's credit to its creator: what the wallet writes right after a spend and what the flusher
completes for every gift it writes to Postgres (so a crash between the two is always completed).

The flusher sits below the wallet: it takes any `Crediter` (the wallet is one) instead of
importing it, so the money package's imports run one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Gifts of one creator credited by one script call (the script's KEYS grow with it).
MAX_CREDITS_PER_CALL = 256


@dataclass(frozen=True, slots=True)
class Credit:
    """One accepted gift's credit to its creator."""

    creator: str
    viewer: str
    tx: str
    coins: int
    room: str
    gift: str
    count: int


class Crediter(Protocol):
    """Credits creators idempotently per gift (`credit.lua`)."""

    async def uncredited(self, creator: str, credits: Sequence[Credit]) -> list[Credit]:
        """Those of the creator's gifts that have no credit yet."""
        ...

    async def credit_many(self, creator: str, credits: Sequence[Credit]) -> int:
        """Credit several gifts of one creator; returns the diamonds added now."""
        ...
