"""Payment providers: turn a store receipt into a verified (receipt id, user, package).

A real provider (App Store, Play, Stripe) would call its server here. The built-in sandbox
provider verifies receipts signed with HMAC-SHA256 under `sandbox_receipt_secret`: the receipt is
`base64url(canonical JSON payload) "." hex(HMAC(secret, that base64 text))`, the payload
`{"id", "user", "package", "issued_at"}` with sorted keys and no spaces. `sign_sandbox_receipt`
makes one (tests, the demo, `POST /api/sandbox/receipts` in demo mode).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from server.money.wallet import valid_ident

MAX_RECEIPT_LEN = 2048


class ReceiptError(Exception):
    """The receipt is forged, malformed or not for this purchase. `code` is a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    receipt_id: str
    user: str
    package: str


class PaymentProvider(Protocol):
    name: str

    async def verify(self, receipt: str) -> VerifiedReceipt: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: str, body: str) -> str:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def sign_sandbox_receipt(
    secret: str, user: str, package: str, receipt_id: str | None = None
) -> str:
    payload = {
        "id": receipt_id or "sbx-" + secrets.token_hex(8),
        "user": user,
        "package": package,
        "issued_at": int(time.time()),
    }
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


class SandboxProvider:
    """Test receipts: accepted only where `enabled` (development or demo mode); elsewhere every
    receipt is refused with `sandbox_disabled` before its signature is even looked at."""

    name = "sandbox"

    def __init__(self, secret: str, *, enabled: bool = True) -> None:
        self._secret = secret
        self._enabled = enabled

    async def verify(self, receipt: str) -> VerifiedReceipt:
        if not self._enabled:
            raise ReceiptError("sandbox_disabled",
                               "sandbox receipts are accepted in development or demo mode only")
        if not isinstance(receipt, str) or len(receipt) > MAX_RECEIPT_LEN or "." not in receipt:
            raise ReceiptError("invalid_value", "receipt: malformed")
        body, mac = receipt.rsplit(".", 1)
        if not hmac.compare_digest(mac, _mac(self._secret, body)):
            raise ReceiptError("invalid_value", "receipt: signature does not verify")
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            rid, user, package = payload["id"], payload["user"], payload["package"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ReceiptError("invalid_value", "receipt: malformed payload") from None
        if not (isinstance(user, str) and isinstance(rid, str) and valid_ident(rid)
                and isinstance(package, str)):
            raise ReceiptError("invalid_value", "receipt: malformed payload")
        return VerifiedReceipt(rid, user, package)
