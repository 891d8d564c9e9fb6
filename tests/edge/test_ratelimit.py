"""Token buckets (server/edge/ratelimit.py): a penalty drains a bucket, a burst in debt at most."""

from __future__ import annotations

import time

from server.edge.ratelimit import TokenBucket, UserBuckets


def test_a_penalty_puts_a_bucket_in_debt_of_one_burst_at_most() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5)
    now = time.monotonic()  # one instant throughout: nothing refills
    bucket.drain(3, now=now)
    assert [bucket.take(now=now) for _ in range(3)] == [0, 0, 100]
    bucket.drain(1000, now=now)  # down to -5, not -1000
    # (1 - (-5)) tokens at 10/s: 600 ms until the next is allowed.
    assert bucket.take(now=now) == 600


def test_per_user_penalties_are_kept_apart() -> None:
    buckets = UserBuckets(rate_per_s=0.001, burst=2)
    buckets.drain("flooder", 2)
    assert buckets.take("flooder") > 0
    assert buckets.take("neighbour") == 0
