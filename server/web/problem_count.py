"""ASGI middleware: every HTTP problem response counted by status and code
(`giftwire_http_problems_total`), so the operator view's rate-limit and error counts include the
HTTP refusals (429 `rate_limited`, 4xx refusals, 500s) beside the WebSocket error frames; and
`count_refusal` for those the socket edge's gate answers before the app (server/serve.py wires
it), in the same counter. `count_violation`: a WebSocket the edge closed for a broken limit (no
error frame, no problem response), by close code (`giftwire_edge_closes_total`)."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from server.metrics import Metrics
from server.web.problem import PROBLEM_TYPE

_CODE = re.compile(r"[a-z_]{1,40}")  # the label stays within the documented codes' alphabet
_MAX_PARSED = 4096  # a problem document is a few hundred bytes


def _code_of(body: bytes) -> str:
    if len(body) > _MAX_PARSED:
        return "other"
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return "other"
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "other"


class ProblemCounter:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is None:  # before the lifespan started the runtime: nothing to count into
            await self.app(scope, receive, send)
            return
        counter = runtime.metrics.http_problems
        status = 0

        async def counting(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or ()).get(b"content-type", b"")
                if message["status"] >= 400 and ctype.startswith(PROBLEM_TYPE.encode()):
                    status = message["status"]
            elif message["type"] == "http.response.body" and status:
                counter.labels(str(status), _code_of(message.get("body", b""))).inc()
                status = 0  # the first body chunk holds the whole document
            await send(message)

        try:
            await self.app(scope, receive, counting)
        except Exception:
            counter.labels("500", "internal").inc()  # answered by Starlette's error middleware
            raise


def _metrics(app: Any) -> Metrics | None:
    runtime = getattr(app.state, "runtime", None)
    # Before the lifespan started the runtime: nothing to count into.
    return None if runtime is None else cast(Metrics, runtime.metrics)


def count_refusal(app: Any, status: int, code: str) -> None:
    """A problem response the gate answered itself (server/edge/transport/gate.py)."""
    if (metrics := _metrics(app)) is not None:
        metrics.http_problems.labels(str(status), code).inc()


def count_violation(app: Any, code: int) -> None:
    """A WebSocket closed by the edge for a broken limit (server/edge/transport/websocket.py)."""
    if (metrics := _metrics(app)) is not None:
        metrics.edge_closes.labels(str(code)).inc()
