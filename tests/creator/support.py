"""Helpers of the creator tests."""

from __future__ import annotations

from server.auth import TokenIssuer

CREATOR = "creator1"


def auth(issuer: TokenIssuer, user: str = CREATOR, role: str = "creator") -> dict[str, str]:
    """The Authorization header of a fresh token (the room's creator by default)."""
    return {"Authorization": "Bearer " + issuer.mint(user, role)}
