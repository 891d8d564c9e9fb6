"""The HTTP JSON API of the wallet, the ledger and room lifecycle.

Every route but the catalog needs `Authorization: Bearer <token>`; a token acts only on its own
user's wallet (the user comes from the token, never from the body). Errors are problem+json with
the protocol's stable codes; a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.errors import ErrorCode
from protocol.limits import MAX_GIFT_COUNT, MAX_ROOM_ID_LEN, MAX_TX_ID_LEN
from server.auth import AuthError, Principal, Role, refuse_revoked
from server.config import Config
from server.edge.ratelimit import gift_budget
from server.live import overlay_keys
from server.live.overlay_keys import OverlayKeys
from server.money import ledger, streams
from server.money.payments import ReceiptError, SandboxProvider, sign_sandbox_receipt
from server.money.wallet import SpendRequest, Wallet, WalletState, valid_ident
from server.runtime import Runtime, log_failure
from server.web.body import predecode, read_fields
from server.web.paging import page_answer, page_params
from server.web.problem import problem, refusal

log = logging.getLogger("giftwire.api")

def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _wallet(request: Request) -> Wallet:
    wallet: Wallet = _rt(request).components["wallet"]
    return wallet


async def principal(request: Request) -> Principal:
    p = await _checked_locally(request)
    rt = _rt(request)
    try:
        await rt.issuer.check_revoked(p, rt.redis)
    except AuthError as exc:
        raise refusal(exc.code, exc.message) from None
    return p


async def _checked_locally(request: Request) -> Principal:
    """The bearer token's signature and expiry, then the body: every refusal that needs no
    Redis comes first, so a flood of bad bodies with a good token costs no round trip
    (docs/protocol.md, "HTTP bodies"). The revocation lookup is the caller's."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise refusal("unauthorized", "a bearer token is required")
    try:
        p = _rt(request).issuer.decode(token.strip())
    except AuthError as exc:
        raise refusal(exc.code, exc.message) from None
    await predecode(request)
    return p


async def _own_wallet(request: Request) -> tuple[Principal, WalletState]:
    """`principal` and the caller's wallet in one round trip: the revocation lookup and the
    wallet read are submitted together to the script runner, which writes the calls of one
    event-loop iteration as one batch on its own connection. A burst of balance reads (issue 10)
    then costs no pooled connection and one Redis write per loop iteration, not two per
    request (BENCHMARKS.md, "Hostile edge, adjacent quiet windows")."""
    p = await _checked_locally(request)
    wallet = _wallet(request)
    found, reply = await _both(
        _rt(request).issuer.revocation_lookup(p, wallet.scripts), wallet.state_lookup(p.user))
    try:
        refuse_revoked(found)
    except AuthError as exc:
        raise refusal(exc.code, exc.message) from None
    return p, wallet.state_from(p.user, reply)


async def room_reader(request: Request) -> Principal:
    """`principal`, or an overlay key's (for a room's public state only: a key is pasted into
    OBS and may leak, so it must never read its creator's wallet)."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip().startswith(overlay_keys.PREFIX):
        try:
            return await OverlayKeys(_rt(request)).verify(credential.strip())
        except AuthError as exc:
            raise refusal(exc.code, exc.message) from None
    return await principal(request)


async def _both(first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
    """Both results; if either failed, its exception, after both are done (neither is left
    with an exception nobody reads)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    for result in (a, b):
        if isinstance(result, BaseException):
            raise result
    return a, b


def _role(p: Principal, *roles: Role) -> None:
    if p.role not in roles:
        raise refusal("forbidden", f"a {p.role.value} token may not do this")


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(data)


# -- catalog and balances -------------------------------------------------------------------
async def get_catalog(request: Request) -> Response:
    return _ok(_wallet(request).catalog.to_json())


async def get_balance(request: Request) -> Response:
    p, state = await _own_wallet(request)
    return _ok({"user": p.user, "coins": state.coins, "diamonds": state.diamonds,
                "frozen": state.frozen, "daily_limit": state.daily_limit})


async def get_earnings(request: Request) -> Response:
    p, state = await _own_wallet(request)
    return _ok({"user": p.user, "diamonds": state.diamonds, "carry": state.carry,
                "redeem_min_diamonds": _rt(request).config.redeem_min_diamonds})


async def get_transactions(request: Request) -> Response:
    p = await principal(request)
    before_id, limit = page_params(request)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in ledger.KINDS:
        raise refusal("invalid_value", f"kind: must be one of {', '.join(sorted(ledger.KINDS))}")
    items = await ledger.history(_rt(request).pool, p.user, before=before_id, limit=limit,
                                 kind=kind)
    return _ok(page_answer(items, limit))


# -- spending and money in ------------------------------------------------------------------
async def post_gift(request: Request) -> Response:
    p = await principal(request)
    if not p.can_spend:
        raise refusal("forbidden", "this token cannot spend")
    # Before the body is read: a flood of any kind of gift request costs one token each, from
    # the same budget as the user's WebSocket gifts.
    retry_ms = gift_budget(_rt(request)).take(p.user)
    if retry_ms:
        refused = problem(429, "rate_limited", f"too many gifts: retry in {retry_ms} ms")
        refused.headers["Retry-After"] = str(-(-retry_ms // 1000))
        return refused
    r = await read_fields(request, frozenset({"room", "gift", "count", "tx", "combo"}))
    req = SpendRequest(
        p.user, r.ident("room", MAX_ROOM_ID_LEN), r.ident("gift", 32),
        r.integer("count", 1, MAX_GIFT_COUNT), r.ident("tx", MAX_TX_ID_LEN),
        r.opt_ident("combo", 64),
    )
    realtime = _rt(request).components.get("realtime")
    res = await _wallet(request).spend(req)
    if not res.ok:
        raise refusal(res.code or "internal_error", f"gift refused: {res.code}")
    # The room sees it like a WebSocket gift (idempotent per tx: a retry completes a publish
    # that failed after the debit).
    if realtime is not None:
        try:
            await realtime.gifts.publish_spend(req, p.name, res)
        except Exception as exc:
            log_failure(log, f"publishing {req.tx} after the debit", exc)
            raise refusal(
                "unavailable", "accepted but not yet delivered; retry the same tx"
            ) from None
    return _ok({"tx": req.tx, "balance": res.balance, "coins": res.coins,
                "duplicate": res.duplicate, "creator": res.creator})


async def post_purchase(request: Request) -> Response:
    p = await principal(request)
    if not p.can_spend:
        raise refusal("forbidden", "this token cannot buy coins")
    r = await read_fields(request, frozenset({"package", "receipt"}))
    package, receipt = r.ident("package", 32), r.text("receipt", 2048)
    rt = _rt(request)
    try:
        sandbox = SandboxProvider(rt.config.sandbox_receipt_secret,
                                  enabled=rt.config.development or rt.config.demo)
        verified = await sandbox.verify(receipt)
    except ReceiptError as exc:
        raise refusal(exc.code, str(exc)) from None
    if verified.user != p.user:
        raise refusal("forbidden", "the receipt belongs to another user")
    if verified.package != package:
        raise refusal("invalid_value", "the receipt is for another package")
    res = await _wallet(request).purchase(p.user, package, verified.receipt_id)
    if not res.ok:
        raise refusal(res.code or "internal_error", f"purchase refused: {res.code}")
    return _ok({"receipt": verified.receipt_id, "balance": res.balance,
                "duplicate": res.duplicate, "tx": res.tx_key})


async def post_sandbox_receipt(request: Request) -> Response:
    """Demo mode only: a signed sandbox receipt for the caller, as a store app would get."""
    rt = _rt(request)
    if not rt.config.demo:
        raise refusal("not_found", "sandbox receipts are served in demo mode only")
    p = await principal(request)
    r = await read_fields(request, frozenset({"package"}))
    package = r.ident("package", 32)
    if package not in _wallet(request).catalog.packages:
        raise refusal("invalid_value", "unknown package")
    return _ok({"receipt": sign_sandbox_receipt(rt.config.sandbox_receipt_secret, p.user,
                                                package)})


async def post_redeem(request: Request) -> Response:
    p = await principal(request)
    _role(p, Role.CREATOR, Role.ADMIN)
    r = await read_fields(request, frozenset({"diamonds", "request_id"}))
    diamonds, request_id = r.integer("diamonds", 1), r.ident("request_id", MAX_TX_ID_LEN)
    res = await _wallet(request).redeem(p.user, diamonds, request_id)
    if not res.ok:
        raise refusal(res.code or "internal_error", f"redemption refused: {res.code}")
    return _ok({"diamonds": res.balance, "duplicate": res.duplicate, "tx": res.tx_key})


async def post_daily_limit(request: Request) -> Response:
    """A viewer caps their own daily spending (0: only the platform's limit applies)."""
    p = await principal(request)
    if not p.can_spend:
        raise refusal("forbidden", "this token has no wallet to limit")
    r = await read_fields(request, frozenset({"coins"}))
    coins = r.integer("coins", 0, 10**12)
    await _wallet(request).set_daily_limit(p.user, coins)
    return _ok({"user": p.user, "daily_limit": coins})


# -- administration -------------------------------------------------------------------------
async def post_grant(request: Request) -> Response:
    p = await principal(request)
    _role(p, Role.ADMIN)
    r = await read_fields(request, frozenset({"user", "coins", "grant_id"}))
    user = r.text("user", 128)
    coins, grant_id = r.integer("coins", 1, 10**12), r.ident("grant_id", MAX_TX_ID_LEN)
    if not user:
        raise refusal("invalid_value", "user: must not be empty")
    res = await _wallet(request).grant(user, coins, grant_id, p.user)
    if not res.ok:
        raise refusal(res.code or "internal_error", f"grant refused: {res.code}")
    return _ok({"user": user, "balance": res.balance, "duplicate": res.duplicate,
                "tx": res.tx_key})


async def post_reverse(request: Request) -> Response:
    p = await principal(request)
    _role(p, Role.ADMIN)
    r = await read_fields(request, frozenset({"tx", "receipt"}))
    key, receipt = r.opt_text("tx", 256), r.opt_ident("receipt", 128)
    if (key is None) == (receipt is None):
        raise refusal("missing_field", "give exactly one of tx, receipt")
    if receipt is not None:
        found = await ledger.find_purchase(_rt(request).pool, receipt)
        if found is None:
            raise refusal("not_found", "no purchase with this receipt in the ledger")
        key = found.tx_key
    assert key is not None
    res = await _wallet(request).reverse(key, p.user)
    if not res.ok:
        raise refusal(res.code or "internal_error", "no purchase or grant with this key")
    return _ok({"tx": res.tx_key, "balance": res.balance, "taken": res.taken,
                "shortfall": res.shortfall, "frozen": res.shortfall > 0,
                "duplicate": res.duplicate})


async def post_unfreeze(request: Request) -> Response:
    p = await principal(request)
    _role(p, Role.ADMIN)
    r = await read_fields(request, frozenset({"user"}))
    user = r.text("user", 128)
    if not user:
        raise refusal("invalid_value", "user: must not be empty")
    await _wallet(request).unfreeze(user)
    return _ok({"user": user, "frozen": False})


async def post_revoke(request: Request) -> Response:
    """Revoke a token: your own (no body, or `token` minted for you), or any as an admin."""
    p = await principal(request)
    r = await read_fields(request, frozenset({"token"}))
    target = r.opt_text("token", 4096)
    rt = _rt(request)
    if target is None:
        target = request.headers["authorization"].partition(" ")[2].strip()
    try:
        owner = rt.issuer.decode(target)
    except AuthError as exc:
        raise refusal(exc.code, exc.message) from None
    if owner.user != p.user and p.role is not Role.ADMIN:
        raise refusal("forbidden", "only an admin may revoke another user's token")
    await rt.issuer.revoke(target, rt.redis)
    return _ok({"revoked": owner.token_id})


# -- rooms ----------------------------------------------------------------------------------
def room_param(request: Request) -> str:
    """The `{room}` of the path, checked like every room id."""
    room = request.path_params["room"]
    if not valid_ident(room, MAX_ROOM_ID_LEN):
        raise refusal("invalid_value", "room: must be 1+ of A-Z a-z 0-9 - . _ ~")
    return str(room)


async def post_live(request: Request) -> Response:
    p = await principal(request)
    _role(p, Role.CREATOR)
    room = room_param(request)
    r = await read_fields(request, frozenset({"title"}))
    title = r.opt_text("title", 256) or ""
    rt = _rt(request)
    try:
        info = await streams.go_live(rt, room, p.user, title,
                                     on_change=rt.components.get("on_room_change"))
    except streams.RoomOwnedError:
        raise refusal("forbidden", "the room belongs to another creator") from None
    return _ok({"room": room, "creator": info.creator, "live": True, "title": info.title})


async def room_owner(request: Request) -> tuple[Principal, streams.RoomInfo]:
    """The caller, who must be the path room's creator (or an admin), and the room."""
    p = await principal(request)
    _role(p, Role.CREATOR, Role.ADMIN)
    info = await streams.room_info(_rt(request), room_param(request))
    if info is None:
        raise refusal(ErrorCode.ROOM_NOT_FOUND.value, "no such room: go live once to create it")
    if info.creator != p.user and p.role is not Role.ADMIN:
        raise refusal("forbidden", "the room belongs to another creator")
    return p, info


async def post_end(request: Request) -> Response:
    _, info = await room_owner(request)
    rt = _rt(request)
    await streams.end_stream(rt, info.room, on_change=rt.components.get("on_room_change"))
    return _ok({"room": info.room, "creator": info.creator, "live": False})


def routes(config: Config) -> list[Route]:
    return [
        Route("/api/catalog", get_catalog, methods=["GET"]),
        Route("/api/me/balance", get_balance, methods=["GET"]),
        Route("/api/me/transactions", get_transactions, methods=["GET"]),
        Route("/api/me/earnings", get_earnings, methods=["GET"]),
        Route("/api/me/redeem", post_redeem, methods=["POST"]),
        Route("/api/me/daily-limit", post_daily_limit, methods=["POST"]),
        Route("/api/gifts", post_gift, methods=["POST"]),
        Route("/api/purchases", post_purchase, methods=["POST"]),
        Route("/api/sandbox/receipts", post_sandbox_receipt, methods=["POST"]),
        Route("/api/admin/grant", post_grant, methods=["POST"]),
        Route("/api/admin/reverse", post_reverse, methods=["POST"]),
        Route("/api/admin/unfreeze", post_unfreeze, methods=["POST"]),
        Route("/api/tokens/revoke", post_revoke, methods=["POST"]),
        Route("/api/rooms/{room}/live", post_live, methods=["POST"]),
        Route("/api/rooms/{room}/end", post_end, methods=["POST"]),
    ]
