"""Signed access tokens (JWT, HS256) and their revocation.

A token carries: `sub` (user id), `role` (viewer | creator | overlay | admin), `name` (display
name, under protocol/names.py's policy: checked when minted and again when read), `room`
(overlay tokens only: the one room it may read), `exp`, `iat` and `jti` (token id).
Revocation stores the jti in Redis until the token would have expired anyway.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from redis.asyncio import Redis

from protocol import ErrorCode, ProtocolError, Role
from protocol.names import display_name
from server.storage.keys import Keys
from server.storage.scripts import ScriptCalls

ALGORITHM = "HS256"
ISSUER = "giftwire"
# The scripts (server/storage/lua/<name>.lua) this module calls.
AUTH_SCRIPTS = frozenset({"revoked"})
# Tokens that passed `decode`, by their text, so a client repeating its token (every HTTP
# request carries it) is not checked again: the HMAC, base64 and claim checks were a third of a
# refused request's cost in issue 10's HTTP floods. Bounded in entries and in token length (a
# token is ~300 bytes; only validly signed ones get in, so an attacker cannot fill it with
# variants); on a hit the expiry is checked again, the one claim that can turn a good token bad.
DECODED_MAX = 4096
DECODED_MAX_TOKEN_LEN = 1024


def refuse_revoked(found: Any) -> None:
    """Raise TOKEN_REVOKED when a revocation lookup found the token's record."""
    if found:
        raise AuthError(ErrorCode.TOKEN_REVOKED, "the token has been revoked")


class AuthError(Exception):
    """A token was refused, with the protocol's error code (unauthorized, token_expired, ...)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    name: str
    token_id: str
    expires_at: int
    room: str | None = None

    @property
    def can_spend(self) -> bool:
        # Overlays only read; creators may also gift in other creators' rooms. Identity tests:
        # `in` a tuple compares through Enum.__eq__ in Python, once per gift.
        role = self.role
        return role is Role.VIEWER or role is Role.CREATOR or role is Role.ADMIN

    def may_read(self, room: str) -> bool:
        return self.role is not Role.OVERLAY or self.room == room


class TokenIssuer:
    def __init__(self, secret: str, keys: Keys, default_ttl_s: int = 24 * 3600) -> None:
        self._secret = secret
        self._keys = keys
        self._ttl = default_ttl_s
        # Set by the real-time component (server/edge/revocations.py): tells every process's open
        # sessions of a newly revoked token at once. Unset (a CLI, a test's own issuer): the
        # sessions' periodic check still finds the revocation in Redis.
        self.announce: Callable[[str], Awaitable[None]] | None = None
        self._decoded: dict[str, Principal] = {}
        self.clock: Callable[[], float] = time.time  # the expiry check of a cached token

    def mint(
        self,
        user: str,
        role: Role | str,
        *,
        name: str | None = None,
        room: str | None = None,
        ttl_s: int | None = None,
        now: float | None = None,
    ) -> str:
        role = Role(role)
        try:
            shown = display_name(name or user)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        if role is Role.OVERLAY and not room:
            raise ValueError("an overlay token needs the room it may read")
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "iss": ISSUER,
            "sub": user,
            "role": role.value,
            "name": shown,
            "iat": issued,
            "exp": issued + (self._ttl if ttl_s is None else ttl_s),
            "jti": secrets.token_urlsafe(12),
        }
        if room:
            claims["room"] = room
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> Principal:
        """Check signature, expiry and shape (not revocation: that needs Redis, see verify)."""
        known = self._decoded.get(token)
        if known is not None:
            if known.expires_at <= self.clock():  # as PyJWT: expired at `exp`, no leeway
                raise AuthError(ErrorCode.TOKEN_EXPIRED, "the token has expired")
            return known
        principal = self._decode(token)
        if len(token) <= DECODED_MAX_TOKEN_LEN:
            if len(self._decoded) >= DECODED_MAX:
                del self._decoded[next(iter(self._decoded))]  # the oldest
            self._decoded[token] = principal
        return principal

    @property
    def decoded_cached(self) -> int:
        return len(self._decoded)

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(ErrorCode.TOKEN_EXPIRED, "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        try:
            role = Role(claims.get("role"))
        except ValueError:
            raise AuthError(ErrorCode.UNAUTHORIZED, "invalid token: unknown role") from None
        sub, name, room = claims["sub"], claims.get("name", claims["sub"]), claims.get("room")
        if not isinstance(sub, str) or not isinstance(name, str) or not (
            room is None or isinstance(room, str)
        ):
            raise AuthError(ErrorCode.UNAUTHORIZED, "invalid token: malformed claims")
        if role is Role.OVERLAY and not room:
            raise AuthError(ErrorCode.UNAUTHORIZED, "invalid token: overlay token without a room")
        try:
            # Names enter through tokens: one minted elsewhere with the same key is held to the
            # same policy as ours.
            name = display_name(name)
        except ProtocolError as exc:
            raise AuthError(exc.code, exc.message) from None
        return Principal(sub, role, name, str(claims["jti"]), int(claims["exp"]), room)

    async def verify(self, token: str, redis: Redis) -> Principal:
        principal = self.decode(token)
        await self.check_revoked(principal, redis)
        return principal

    async def check_revoked(self, principal: Principal, redis: Redis) -> None:
        """The part of `verify` that needs Redis: callers with local refusals of their own (a
        bad request body) make those between `decode` and this."""
        refuse_revoked(await redis.exists(self._keys.revoked(principal.token_id)))

    def revocation_lookup(self, principal: Principal, scripts: ScriptCalls) -> Awaitable[Any]:
        """`check_revoked`'s lookup as a call on the script runner's own connection, batched
        with the other calls of this event-loop iteration (a balance read's wallet lookup: one
        write and one round trip for both, no pooled connection taken); `refuse_revoked` reads
        its result."""
        return scripts.submit("revoked", [self._keys.revoked(principal.token_id)], [])

    async def revoked_among(self, token_ids: list[str], redis: Redis) -> set[str]:
        """Which of these tokens are revoked: one pipelined round trip (open sessions' check)."""
        if not token_ids:
            return set()
        async with redis.pipeline(transaction=False) as pipe:
            for token_id in token_ids:
                pipe.exists(self._keys.revoked(token_id))
            found = await pipe.execute()
        return {t for t, n in zip(token_ids, found, strict=True) if n}

    async def revoke(self, token: str, redis: Redis) -> Principal:
        """Store the revocation, then announce it (once: a token revoked again is not announced
        again, so repeating a revocation costs the processes nothing)."""
        principal = self.decode(token)
        ttl = max(1, principal.expires_at - int(time.time()) + 60)
        fresh = await redis.set(self._keys.revoked(principal.token_id), b"1", ex=ttl, nx=True)
        if fresh and self.announce is not None:
            await self.announce(principal.token_id)
        return principal
