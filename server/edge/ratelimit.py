"""Token buckets: per connection (every message) and per user (gifts), kept in process memory.

Local, not in Redis: a limit check on every frame must not cost a round trip, and the spend path
already has its own hard limits (balance, optional daily limit) in the wallet. The per-user gift
budget (`gift_budget`) is one per process, shared by the WebSocket `gift` and `POST /api/gifts`: a
user gets one rate whichever way they send. A user whose connections land on N processes gets N
times the gift rate, which the connection limit and the balance bound anyway (docs/hub.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self, now: float | None = None) -> int:
        """Take one token: 0 if allowed, else milliseconds until one is available.

        `now` is when the request arrived (time.monotonic()), not when it is processed: a server
        stall must not turn a client's steady stream into a burst. A stamp older than the last
        one (another connection of the same user, read later) refills nothing."""
        now = time.monotonic() if now is None else now
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        if self.rate <= 0:
            return 60_000
        return max(1, int((1.0 - self._tokens) / self.rate * 1000 + 0.999))

    def drain(self, tokens: float, now: float | None = None) -> None:
        """Take `tokens` as a penalty, down to one burst in debt at most (so a penalty delays
        the next admission by at most 2 x burst / rate)."""
        now = time.monotonic() if now is None else now
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        self._tokens = max(-self.burst, self._tokens - tokens)


class UserBuckets:
    """One bucket per user, at most `capacity` users remembered (least recently used go first;
    a forgotten user starts again with a full burst, which is the bucket's resting state)."""

    def __init__(self, rate_per_s: float, burst: int, capacity: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, user: str, now: float | None = None) -> int:
        return self._bucket(user).take(now)

    def drain(self, user: str, tokens: float) -> None:
        self._bucket(user).drain(tokens)

    def _bucket(self, user: str) -> TokenBucket:
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(user)
        return bucket


def gift_budget(rt: Any) -> UserBuckets:
    """The process's per-user gift budget (`rate_per_s`/`rate_burst`), one for every path that
    spends on a gift; made on first use and kept with the runtime."""
    budget: UserBuckets | None = rt.components.get("gift_budget")
    if budget is None:
        budget = rt.components["gift_budget"] = UserBuckets(rt.config.rate_per_s,
                                                            rt.config.rate_burst)
    return budget
