import time

import jwt
import pytest
from redis.asyncio import Redis

from server.auth import DECODED_MAX, AuthError, Role, TokenIssuer


def test_a_minted_token_decodes_to_its_principal(issuer: TokenIssuer) -> None:
    p = issuer.decode(issuer.mint("alice", "viewer", name="Alice"))
    assert (p.user, p.role, p.name, p.room) == ("alice", Role.VIEWER, "Alice", None)
    assert p.can_spend and p.may_read("any-room")


def test_an_overlay_token_reads_one_room_and_spends_nothing(issuer: TokenIssuer) -> None:
    p = issuer.decode(issuer.mint("creator1", "overlay", room="room1"))
    assert not p.can_spend
    assert p.may_read("room1") and not p.may_read("room2")
    with pytest.raises(ValueError):
        issuer.mint("creator1", "overlay")


def test_expired_forged_and_garbage_tokens_are_refused(issuer: TokenIssuer) -> None:
    expired = issuer.mint("alice", "viewer", ttl_s=10, now=time.time() - 3600)
    with pytest.raises(AuthError) as e:
        issuer.decode(expired)
    assert e.value.code == "token_expired"

    claims = jwt.decode(issuer.mint("alice", "viewer"), options={"verify_signature": False})
    other_key = "not-the-secret-but-long-enough-for-hs256"
    forged = jwt.encode({**claims, "sub": "mallory"}, other_key, algorithm="HS256")
    for bad in (forged, "garbage", "", jwt.encode({**claims, "role": "root"}, "x" * 40)):
        with pytest.raises(AuthError) as e:
            issuer.decode(bad)
        assert e.value.code == "unauthorized"

    none_alg = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(AuthError):
        issuer.decode(none_alg)


def test_a_token_decoded_before_is_still_refused_once_it_expires(issuer: TokenIssuer) -> None:
    token = issuer.mint("alice", "viewer", ttl_s=100)
    first = issuer.decode(token)
    assert issuer.decode(token) is first  # remembered: no second HMAC check
    issuer.clock = lambda: first.expires_at  # the moment it expires (PyJWT: exp <= now)
    with pytest.raises(AuthError) as e:
        issuer.decode(token)
    assert e.value.code == "token_expired"
    # A forgery of a remembered token's claims is a different text: checked, refused.
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-secret-but-long-enough-for-hs256", algorithm="HS256")
    with pytest.raises(AuthError) as e:
        issuer.decode(forged)
    assert e.value.code == "unauthorized"


def test_remembered_tokens_are_bounded(issuer: TokenIssuer) -> None:
    tokens = [issuer.mint(f"u{i}", "viewer") for i in range(DECODED_MAX + 50)]
    for token in tokens:
        issuer.decode(token)
    assert issuer.decoded_cached == DECODED_MAX
    assert issuer.decode(tokens[0]).user == "u0"  # evicted, checked again: still good
    long_token = issuer.mint("x" * 900, "viewer", name="X")  # over the remembered length
    assert len(long_token) > 1024 and issuer.decode(long_token).name == "X"
    assert issuer.decoded_cached == DECODED_MAX


async def test_a_revoked_token_is_refused(issuer: TokenIssuer, redis: Redis) -> None:
    token = issuer.mint("alice", "viewer")
    other = issuer.mint("alice", "viewer")
    assert (await issuer.verify(token, redis)).user == "alice"
    await issuer.revoke(token, redis)
    with pytest.raises(AuthError) as e:
        await issuer.verify(token, redis)
    assert e.value.code == "token_revoked"
    assert (await issuer.verify(other, redis)).user == "alice"  # only that token
