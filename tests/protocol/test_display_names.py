"""The display-name policy (protocol/names.py, docs/protocol.md section 3): where names enter (a
token's `name`, minted or read) and the policy itself."""

from __future__ import annotations

import jwt
import pytest

from protocol import ErrorCode, ProtocolError
from protocol.limits import MAX_DISPLAY_NAME_LEN
from protocol.names import display_name
from server.auth import ALGORITHM, ISSUER, AuthError, TokenIssuer
from server.storage.keys import Keys

ACCEPTED = [
    ("Alice", "Alice"),
    ("Zoë", "Zoë"),
    ("Zoe\u0308", "Zoë"),  # decomposed: normalised to NFC
    ("李小龙", "李小龙"),
    ("مريم", "مريم"),  # right-to-left text itself is fine; overrides are not
    ("fan 🌹", "fan 🌹"),
    ("👨\u200d👩\u200d👧\u200d👦", "👨\u200d👩\u200d👧\u200d👦"),  # an emoji family: 3 joiners
    ("❤\ufe0f", "❤\ufe0f"),  # a variation selector is a mark on its character
    ("x" * MAX_DISPLAY_NAME_LEN, "x" * MAX_DISPLAY_NAME_LEN),
]

REFUSED = [
    "",
    " ",
    " Alice",
    "Alice ",
    "Al  ice",
    "x" * (MAX_DISPLAY_NAME_LEN + 1),
    "Al\nice",  # control characters
    "Al\x00ice",
    "Al\x7fice",
    "Al\u0085ice",
    "Alice\u202e",  # right-to-left override: reorders what follows the name
    "\u202dAlice",
    "Alice\u2066",  # isolates
    "Al\u2069ice",
    "Al\u200fice",  # right-to-left mark
    "Al\u061cice",  # Arabic letter mark
    "Al\u200bice",  # zero-width space
    "Al\u2060ice",  # word joiner
    "\ufeffAlice",  # BOM
    "Al\u2028ice",  # line separator
    "Al\u00a0ice",  # no-break space
    "Al\ue000ice",  # private use
    "\u200dAlice",  # a joiner first
    "Alice\u200d",  # ... or last
    "Al\u200d\u200dice",  # joiners next to each other
    "Al \u200dice",  # next to a space
    "a\u200db\u200dc\u200dd\u200de\u200df",  # more than 4 joiners
    "\u0301Alice",  # a mark with no character
    "q\u0301\u0302\u0303\u0304algo",  # 4 marks on one character (q has no precomposed ones)
]


@pytest.mark.parametrize(("raw", "shown"), ACCEPTED)
def test_accepted_names_are_normalised_to_nfc(raw: str, shown: str) -> None:
    assert display_name(raw) == shown


@pytest.mark.parametrize("raw", REFUSED)
def test_refused_names_raise_invalid_display_name(raw: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        display_name(raw)
    assert caught.value.code is ErrorCode.INVALID_DISPLAY_NAME


def test_names_length_is_counted_after_nfc() -> None:
    # 32 decomposed "ë" are 64 code points but 32 characters once composed.
    assert display_name("e\u0308" * MAX_DISPLAY_NAME_LEN) == "ë" * MAX_DISPLAY_NAME_LEN


def test_minting_refuses_a_bad_name_and_stores_the_normalised_one() -> None:
    issuer = TokenIssuer("k" * 32, Keys())
    with pytest.raises(ValueError, match="display name"):
        issuer.mint("u1", "viewer", name="evil\u202e")
    with pytest.raises(ValueError, match="display name"):
        issuer.mint("bad\nid", "viewer")  # no name: the user id is shown, under the same policy
    assert issuer.decode(issuer.mint("u1", "viewer", name="Zoe\u0308")).name == "Zoë"


def test_a_token_signed_elsewhere_with_a_bad_name_is_refused_when_read() -> None:
    issuer = TokenIssuer("k" * 32, Keys())
    forged = jwt.encode({"iss": ISSUER, "sub": "u1", "role": "viewer", "name": "a\u2067b",
                         "iat": 1, "exp": 4_000_000_000, "jti": "j"}, "k" * 32,
                        algorithm=ALGORITHM)
    with pytest.raises(AuthError) as caught:
        issuer.decode(forged)
    assert caught.value.code is ErrorCode.INVALID_DISPLAY_NAME
