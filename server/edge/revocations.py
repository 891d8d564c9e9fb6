"""Revoked tokens end their open sessions, on every process, as soon as the revocation is stored.

`TokenIssuer.revoke` stores a revocation in Redis and then announces the token id on one channel
(`Keys.revocation_channel`) that every process subscribes to on its balance-push connection (a
sharded subscription on a cluster: the channel has a slot of its own). Each announcement ends this
process's sessions of that token: `token_revoked` (an overlay key's session: `overlay_key_invalid`),
then close 4004 (4005). A session is condemned before its next frame is read, so no gift it sends
after the announcement reached its process is carried out (server/edge/connection.py reads no
request of a closing session).

Pub/sub loses what is published while its connection is down: after a re-subscription every open
session is checked against Redis at once, and the session watcher (server/edge/realtime.py) checks
them all every half heartbeat as well, so a lost announcement costs at most that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from protocol import ErrorCode
from server.auth import TokenIssuer
from server.hub.broker import Broker
from server.live.overlay_keys import is_key_session
from server.live.user_pushes import UserPushes

log = logging.getLogger("giftwire.revocations")


class Revocations:
    def __init__(self, issuer: TokenIssuer, redis: Redis, channel: str,
                 sessions: Iterable[Any]) -> None:
        self.channel = channel
        self._redis = redis
        self._sessions = sessions  # the process's open sessions (Realtime.connections)
        self._issuer = issuer
        self._broker: Broker | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, pushes: UserPushes) -> None:
        """Listen on the balance pushes' connection; returns once the subscription is live (or
        after SUBSCRIBE_WAIT_S when Redis cannot confirm it: the re-subscription then checks)."""
        await pushes.listen(self.channel, lambda data: self.end({data.decode(errors="replace")}),
                            self._check_soon)
        self._broker = pushes.broker
        self._issuer.announce = self.announce

    def _check_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.check(), name="revocation-check")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        if self._issuer.announce == self.announce:
            self._issuer.announce = None
        for task in list(self._tasks):
            task.cancel()

    async def announce(self, token_id: str) -> None:
        """Tell every process (this one included, through Redis) that `token_id` is revoked. A
        failure only logs: the revocation is stored, and the periodic check finds it."""
        if self._broker is None:
            return
        try:
            await self._broker.publish(self.channel, token_id.encode())
        except Exception as exc:
            log.warning("announcing the revocation of %s failed: %s", token_id, exc)

    async def check(self) -> None:
        """End every open session whose token is revoked (one pipelined Redis round trip)."""
        open_ids = sorted({c.principal.token_id for c in list(self._sessions)
                           if c.principal is not None and c.close_code is None})
        if not open_ids:
            return
        try:
            gone = await self._issuer.revoked_among(open_ids, self._redis)
        except Exception as exc:  # Redis down: the next round checks again
            log.warning("token revocation check failed: %s", exc)
            return
        self.end(gone)

    def end(self, token_ids: set[str]) -> None:
        if not token_ids:
            return
        for conn in list(self._sessions):
            principal = conn.principal
            if principal is None or conn.close_code is not None \
                    or principal.token_id not in token_ids:
                continue
            if is_key_session(principal):  # a rotated overlay key (live/overlay_keys.py)
                conn.token_ended(ErrorCode.OVERLAY_KEY_INVALID, "the overlay key was rotated")
            else:
                conn.token_ended(ErrorCode.TOKEN_REVOKED, "the token has been revoked")
