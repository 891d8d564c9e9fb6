"""Overlay keys: one long-lived, read-only key per room behind a stable overlay URL.

An OBS browser source runs for months, longer than any token lives, so the overlay URL carries
`ok1.<secret>.<room>` instead of a token (`/overlay?key=...`). The key opens a WebSocket session
that may read its room only and spend nothing (an overlay principal that never expires); the
room's creator rotates it from the dashboard, which ends every open session of the old key on
every process (`overlay_key_invalid`, close 4005): at once through a control message on the room's
channel, and within the session watcher's period through the revocation mark the old key gets.

Postgres (`overlay_keys`) is the system of record; the room's overlay hash in Redis caches the
current key and its creator. Rotation clears the cached key, commits the new one, then writes it:
a reader that refills the cache meanwhile uses HSETNX, so it can never put an old key back over
the new one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from protocol import ErrorCode, Role
from protocol.limits import MAX_ROOM_ID_LEN
from server.auth import AuthError, Principal
from server.live.overlay_control import control_message
from server.runtime import Runtime
from server.storage.pubsub import publish

PREFIX = "ok1."
SESSION_PREFIX = "ok1:"  # the token id of a key's sessions: never a JWT's (those have no ':')
OVERLAY_NAME = "Overlay"
# A key session never expires; the far end of the safe-integer range stands for "never".
NEVER = 2**53 - 1
# How long the old key's revocation mark lasts: it only has to outlive the watcher's next look
# at the open sessions (seconds); new sessions with the old key are refused by the lookup.
REVOKED_MARK_S = 7 * 24 * 3600
_KEY = re.compile(rf"^ok1\.([A-Za-z0-9_-]{{32,64}})\.([A-Za-z0-9._~-]{{1,{MAX_ROOM_ID_LEN}}})$")


def parse(key: str) -> str | None:
    """The room a well-formed key names (not whether it is valid: see `OverlayKeys.verify`)."""
    m = _KEY.match(key)
    return m.group(2) if m else None


def session_id(key: str) -> str:
    """The token id of the key's sessions: a digest, so logs and Redis never hold the key."""
    return SESSION_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


def is_key_session(principal: Principal) -> bool:
    return principal.role is Role.OVERLAY and principal.token_id.startswith(SESSION_PREFIX)


def new_key(room: str) -> str:
    return f"{PREFIX}{secrets.token_urlsafe(24)}.{room}"


def _invalid() -> AuthError:
    return AuthError(ErrorCode.OVERLAY_KEY_INVALID,
                     "this overlay key is not valid (rotated or revoked): use the new overlay URL")


class OverlayKeys:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def current(self, room: str) -> tuple[str, str] | None:
        """(key, creator) of the room, or None when it has none yet."""
        cache = self.rt.keys.room_overlay(room)
        key, creator = await self.rt.redis.hmget(cache, "key", "creator")
        if key is not None and creator is not None:
            return key.decode(), creator.decode()
        row = await self.rt.pool.fetchrow(
            "SELECT key, creator FROM overlay_keys WHERE room = $1", room)
        if row is None:
            return None
        async with self.rt.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(cache, "key", row["key"])
            pipe.hsetnx(cache, "creator", row["creator"])
            await pipe.execute()
        return row["key"], row["creator"]

    async def issue(self, room: str, creator: str) -> str:
        """The room's key, made on first use (two callers at once get the same one)."""
        found = await self.current(room)
        if found is not None:
            return found[0]
        await self.rt.pool.execute(
            "INSERT INTO overlay_keys (room, creator, key) VALUES ($1, $2, $3) "
            "ON CONFLICT (room) DO NOTHING", room, creator, new_key(room))
        found = await self.current(room)
        assert found is not None
        return found[0]

    async def rotate(self, room: str, creator: str) -> str:
        """A new key for the room; the old one stops working everywhere."""
        cache = self.rt.keys.room_overlay(room)
        key = new_key(room)
        await self.rt.redis.hdel(cache, "key")
        old = await self.rt.pool.fetchval(
            "WITH old AS (SELECT key FROM overlay_keys WHERE room = $1 FOR UPDATE) "
            "INSERT INTO overlay_keys (room, creator, key) VALUES ($1, $2, $3) "
            "ON CONFLICT (room) DO UPDATE SET key = EXCLUDED.key, created_at = now() "
            "RETURNING (SELECT key FROM old)", room, creator, key)
        await self.rt.redis.hset(cache, mapping={"key": key, "creator": creator})
        if old is not None:
            await self.rt.redis.set(self.rt.keys.revoked(session_id(old)), b"1",
                                    ex=REVOKED_MARK_S)
        await publish(self.rt.redis, self.rt.keys.room_channel(room),
                      control_message(room, "key", session_id(key)))
        return key

    async def verify(self, key: str) -> Principal:
        """The read-only principal of a valid key; AuthError(overlay_key_invalid) otherwise."""
        room = parse(key)
        if room is None:
            raise _invalid()
        found = await self.current(room)
        if found is None or not hmac.compare_digest(found[0].encode(), key.encode()):
            raise _invalid()
        return Principal(found[1], Role.OVERLAY, OVERLAY_NAME, session_id(key), NEVER, room)

    async def principal_of(self, credential: str) -> Principal:
        """A session's credential: an overlay URL's long-lived key, else a token."""
        if credential.startswith(PREFIX):
            return await self.verify(credential)
        return await self.rt.issuer.verify(credential, self.rt.redis)
