"""The one way into an HTTP request's body: a JSON object read under the wire protocol's rules.

Every route that takes a body reads it with `read_fields`: the size is enforced while the body
streams in (a declared `Content-Length` over the limit is refused before a byte is read), the text
is decoded by the protocol's own JSON codec (`JsonCodec.decode_map`: duplicate keys, NaN, UTF-8,
nesting depth, exactly as for WebSocket frames), and fields are read with a strict `FieldReader`
(types, ranges, unknown fields). Every refusal is a problem+json with the protocol's stable code.
`BodyLimit` refuses an over-long declared body on every route, including those that read none.

A body declared as JSON is decoded by `predecode` from `api.principal`, after the token's
signature and expiry (local) but before its revocation lookup (Redis): a bad body is refused
without a Redis round trip, and `read_fields` reuses what was decoded.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request

from protocol import SUBPROTOCOL_JSON, ProtocolError, codec_for
from protocol.codec import JsonCodec
from protocol.fields import FieldReader
from server.web.problem import HTTPProblem, problem, refusal

# A refused body is not read to its end: the connection closes instead (uvicorn would otherwise
# read and discard the rest of a huge body to keep the connection alive).
_CLOSE = {"Connection": "close"}


def _too_large(limit: int) -> HTTPProblem:
    return refusal("frame_too_large", f"the body exceeds {limit} bytes", _CLOSE)


def declared_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # the HTTP parser has already refused a malformed one


_DECODED = "giftwire.body"  # scope key: the body decoded once, by `predecode`


def _declares_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    return bool(declared_length(headers)) and media == "application/json"


async def predecode(request: Request) -> None:
    """Decode a body declared as JSON now (refusals as `read_fields`'), for `read_fields` later.
    Called before anything that costs a Redis round trip; other bodies wait for their route."""
    if _DECODED not in request.scope and _declares_json(request.headers):
        request.scope[_DECODED] = await _decode(request)


async def read_fields(request: Request, allowed: frozenset[str]) -> FieldReader:
    """The body as a strict `FieldReader` over a JSON object (no body: `{}`), refusing any field
    not in `allowed`. Raises `HTTPProblem`; field reads raise `ProtocolError` (the app maps it)."""
    data = request.scope.get(_DECODED)
    if data is None:
        data = await _decode(request)
    reader = FieldReader(data, strict=True)
    reader.reject_unknown(allowed)
    return reader


async def _decode(request: Request) -> dict[str, Any]:
    limit: int = request.app.state.runtime.config.http_max_body_bytes
    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        raise _malformed(request, _too_large(limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _malformed(request, _too_large(limit))
        chunks.append(chunk)
    raw = b"".join(chunks)
    codec = codec_for(SUBPROTOCOL_JSON)
    assert isinstance(codec, JsonCodec)
    try:
        return codec.decode_map(raw, limit) if raw else {}
    except ProtocolError as exc:
        raise _malformed(request, refusal(exc.code.value, exc.message)) from None


def _malformed(request: Request, refused: HTTPProblem) -> HTTPProblem:
    """A body that is not decodable JSON within the limits (too large, too deep, duplicate keys,
    not JSON) costs its address `edge_violation_penalty` HTTP request tokens at the gate: a flood
    of them (issue 10's 2,000-deep JSON) reaches the app about 1 / (1 + penalty) as often, while
    an honest client's occasional bad body costs it a tenth of a second of its budget."""
    admission = getattr(request.app.state, "admission", None)  # None under another server
    if admission is not None and request.client is not None:
        admission.penalise(request.client.host, http=True)
    return refused


class BodyLimit:
    """ASGI middleware: an HTTP request declaring a body over the limit is answered 413 at once,
    whatever the route (one that reads no body would otherwise let uvicorn read it all)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            declared = declared_length(Headers(scope=scope))
            if declared is not None and declared > self.max_bytes:
                refused = _too_large(self.max_bytes)
                response = problem(refused.status, refused.code, refused.detail, refused.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

