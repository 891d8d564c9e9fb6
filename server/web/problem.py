"""HTTP errors as RFC 9457 problem documents, with the same stable codes as the wire protocol."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.hub.rooms import HubError

PROBLEM_TYPE = "application/problem+json"

# HTTP status of each refusal code (the code itself is what clients switch on); others are 400.
STATUS: Mapping[str, int] = {
    "unauthorized": 401, "token_expired": 401, "token_revoked": 401,
    "overlay_key_invalid": 401, "forbidden": 403,
    "self_gift": 403, "blocked": 403, "sandbox_disabled": 403, "not_found": 404,
    "room_not_found": 404, "combo_not_found": 404, "insufficient_funds": 409, "combo_mismatch": 409,
    "tx_conflict": 409, "wallet_frozen": 409,
    "room_ended": 409, "daily_limit_exceeded": 409, "room_not_live": 409, "battle_busy": 409,
    "battle_state": 409, "frame_too_large": 413, "rate_limited": 429,
    "unavailable": 503,
}


class HTTPProblem(Exception):
    """Raise from a route; the app's handler turns it into a problem response."""

    def __init__(self, status: int, code: str, detail: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def refusal(code: str, detail: str, headers: Mapping[str, str] | None = None) -> HTTPProblem:
    """The problem for a stable code, with the status the code has everywhere."""
    return HTTPProblem(STATUS.get(code, 400), code, detail, headers)


Handler = Callable[[Request], Awaitable[Response]]


def refusing(handler: Handler) -> Handler:
    """The route, with a feature's refusals (a HubError: moderation, battles) answered as
    their problem."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except HubError as exc:
            raise refusal(exc.code, exc.message) from None

    return route


def problem(status: int, code: str, detail: str,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"https://giftwire.dev/errors/{code}",
            "title": code.replace("_", " "),
            "status": status,
            "code": code,
            "detail": detail,
        },
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_TYPE,
    )
