"""What the HTTP API answers when a request fails: always a problem+json with a stable code.

- `HTTPProblem` (raised by routes) and `ProtocolError` (a field read by a strict `FieldReader`)
  become their code's problem.
- A backend that cannot serve the request now (Redis or Postgres down, refusing, timing out, or
  the Redis pool's wait deadline passed under a burst) is `503 unavailable` with `Retry-After`,
  logged as one WARNING line without a traceback: it is an operating condition, not a bug, and a
  burst of them must not flood the log. Anything else is a bug: `500 internal_error`, and its
  traceback is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from protocol import ErrorCode, ProtocolError
from server.runtime import BACKEND_UNAVAILABLE
from server.web.problem import STATUS, HTTPProblem, problem

log = logging.getLogger("giftwire.api")

# Seconds a client is told to wait after `unavailable` (the WebSocket path's retry_ms is 1000).
RETRY_AFTER_S = 1

Handler = Callable[[Request, Exception], Awaitable[Response]]


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return problem(exc.status, exc.code, exc.detail, exc.headers)


async def _protocol(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    code = exc.code.value
    return problem(STATUS.get(code, 400), code, exc.message)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # Every code is one of the protocol's (docs/protocol.md section 6): clients switch on one list.
    fallback = ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.INVALID_MESSAGE
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code,
                                                                            fallback).value
    return problem(exc.status_code, code, str(exc.detail))


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: backend unavailable (%s: %s)", request.method, request.url.path,
                type(exc).__name__, exc)
    return problem(503, "unavailable", "a backend is unavailable; retry shortly",
                   {"Retry-After": str(RETRY_AFTER_S)})


async def _bug(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so the traceback still reaches the log.
    return problem(500, "internal_error", "a server bug; the request may or may not have "
                   "taken effect: retry with the same ids")


def exception_handlers() -> Mapping[type[BaseException] | int, Handler]:
    handlers: dict[type[BaseException] | int, Handler] = {
        HTTPProblem: _problem, ProtocolError: _protocol, HTTPException: _http, 500: _bug,
    }
    handlers.update(dict.fromkeys(BACKEND_UNAVAILABLE, _unavailable))
    return handlers
