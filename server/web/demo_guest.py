"""The demo's own viewer: a guest identity for the person at `/demo`, never one of the bots'.

A guest is `guest-<12 hex>`, shown as "Guest <last 4>". The page keeps its id (localStorage) and
asks again with it, so a reload is the same guest with the same wallet; a new guest gets
`WELCOME_COINS` once (an idempotent grant per guest). Demo mode only, like every `/demo` route.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.auth import Role
from server.runtime import Runtime
from server.web.body import read_fields
from server.web.problem import HTTPProblem

if TYPE_CHECKING:
    from server.web.demo import DemoState

GUEST_ID = re.compile(r"guest-[0-9a-f]{12}")
WELCOME_COINS = 5_000
TOKEN_TTL_S = 3600


def demo_of(request: Request) -> tuple[Runtime, DemoState]:
    """The runtime and the running demo; 503 while the demo is still starting."""
    from server.web.demo import DemoState

    rt: Runtime = request.app.state.runtime
    state = rt.components.get("demo")
    if not isinstance(state, DemoState):
        raise HTTPProblem(503, "unavailable", "the demo is still starting")
    return rt, state


def guest_name(user: str) -> str:
    return f"Guest {user[-4:].upper()}"


async def demo_guest(request: Request) -> Response:
    """`POST /demo/api/guest {guest?}`: a viewer token for this guest (a new one without `guest`),
    funded once."""
    rt, _state = demo_of(request)
    given = (await read_fields(request, frozenset({"guest"}))).opt_text("guest", 64)
    if given is not None and GUEST_ID.fullmatch(given) is None:
        raise HTTPProblem(400, "invalid_value", "guest: not a guest id (guest-<12 hex digits>)")
    user = given or f"guest-{secrets.token_hex(6)}"
    wallet = rt.components["wallet"]
    funded = await wallet.grant(user, WELCOME_COINS, "demo-welcome", "demo-admin")
    if not funded.ok:
        raise HTTPProblem(503, "unavailable", "the guest's wallet cannot be funded now")
    name = guest_name(user)
    token = rt.issuer.mint(user, Role.VIEWER, name=name, ttl_s=TOKEN_TTL_S)
    return JSONResponse({"user": user, "name": name, "token": token},
                        headers={"Cache-Control": "no-store"})
