"""Typed, validating field access on a decoded message map.

Messages parse themselves through a `FieldReader`, so every field check (presence, type, range,
length, character set) is written once here and reports a stable error code. Two modes:

- strict (client -> server): every limit is enforced; this is the server's trust boundary.
- lenient (server -> client): only types are checked, because a v1 client must keep working
  when a later server sends longer strings, new enum values or new fields (docs: versioning).

`null` counts as absent for optional fields: JSON clients commonly serialise unset values as null.
"""

import re
from collections.abc import Mapping
from typing import Any, Final

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import IDENTIFIER_PATTERN, MAX_SAFE_INT

_IDENTIFIER: Final = re.compile(IDENTIFIER_PATTERN)


def _is_valid_unicode(value: str) -> bool:
    # JSON's \ud800 escapes decode to lone surrogates, which cannot be encoded to UTF-8 again and
    # would blow up later in Redis or msgpack; ASCII is the common case and skips the encode.
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class FieldReader:
    """Reads fields of one message map, raising `ProtocolError` on the first bad one."""

    __slots__ = ("_data", "strict")

    def __init__(self, data: Mapping[str, Any], *, strict: bool) -> None:
        self._data = data
        self.strict = strict

    # -- primitives --

    def _get(self, name: str) -> Any:
        value = self._data.get(name)
        if value is None:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{name}: required")
        return value

    def _str(self, name: str, value: Any) -> str:
        # isinstance, not `type is`: in-process callers pass StrEnum members (Role, ErrorCode).
        if not isinstance(value, str):
            raise ProtocolError(ErrorCode.WRONG_TYPE, f"{name}: expected string")
        if not _is_valid_unicode(value):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, f"{name}: not valid UTF-8")
        return value

    def _int(self, name: str, value: Any, lo: int, hi: int) -> int:
        # `type(...) is int` rather than isinstance: True is an int to Python but not to us.
        if type(value) is not int:
            raise ProtocolError(ErrorCode.WRONG_TYPE, f"{name}: expected integer")
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT or (self.strict and not lo <= value <= hi):
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"{name}: must be in {lo}..{hi}")
        return value

    def _ident(self, name: str, value: Any, max_len: int) -> str:
        text = self._str(name, value)
        if self.strict:
            if len(text) > max_len:
                raise ProtocolError(ErrorCode.TOO_LONG, f"{name}: longer than {max_len}")
            if _IDENTIFIER.fullmatch(text) is None:
                raise ProtocolError(
                    ErrorCode.INVALID_VALUE, f"{name}: must be 1+ of A-Z a-z 0-9 - . _ ~"
                )
        return text

    def _text(self, name: str, value: Any, max_len: int) -> str:
        text = self._str(name, value)
        # Byte length, not code points: the limit protects storage and frames, which count bytes.
        if self.strict and len(text) > max_len // 4 and len(text.encode()) > max_len:
            raise ProtocolError(ErrorCode.TOO_LONG, f"{name}: longer than {max_len} bytes")
        return text

    # -- required fields --

    def ident(self, name: str, max_len: int = MAX_SAFE_INT) -> str:
        """An identifier: 1..max_len characters from the unreserved set."""
        return self._ident(name, self._get(name), max_len)

    def text(self, name: str, max_len: int = MAX_SAFE_INT) -> str:
        """Free text of at most max_len UTF-8 bytes (may be empty)."""
        return self._text(name, self._get(name), max_len)

    def integer(self, name: str, lo: int = -MAX_SAFE_INT, hi: int = MAX_SAFE_INT) -> int:
        return self._int(name, self._get(name), lo, hi)

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if type(value) is not bool:
            raise ProtocolError(ErrorCode.WRONG_TYPE, f"{name}: expected boolean")
        return value

    def choice(self, name: str, allowed: frozenset[str]) -> str:
        """A string from a fixed set; lenient mode accepts values a later version may add."""
        value = self._str(name, self._get(name))
        if self.strict and value not in allowed:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE, f"{name}: must be one of {', '.join(sorted(allowed))}"
            )
        return value

    def nested(self, name: str) -> "FieldReader":
        """A nested map, read with the same strictness."""
        return self._map(name, self._get(name))

    def nested_list(self, name: str) -> list["FieldReader"]:
        value = self._get(name)
        if type(value) is not list:
            raise ProtocolError(ErrorCode.WRONG_TYPE, f"{name}: expected array")
        return [self._map(f"{name}[{i}]", item) for i, item in enumerate(value)]

    def _map(self, name: str, value: Any) -> "FieldReader":
        if type(value) is not dict:
            raise ProtocolError(ErrorCode.WRONG_TYPE, f"{name}: expected map")
        return FieldReader(value, strict=self.strict)

    # -- optional fields --

    def opt_ident(self, name: str, max_len: int = MAX_SAFE_INT) -> str | None:
        value = self._data.get(name)
        return None if value is None else self._ident(name, value, max_len)

    def opt_text(self, name: str, max_len: int = MAX_SAFE_INT) -> str | None:
        value = self._data.get(name)
        return None if value is None else self._text(name, value, max_len)

    def opt_int(self, name: str, lo: int = -MAX_SAFE_INT, hi: int = MAX_SAFE_INT) -> int | None:
        value = self._data.get(name)
        return None if value is None else self._int(name, value, lo, hi)

    def opt_bool(self, name: str) -> bool | None:
        return None if self._data.get(name) is None else self.boolean(name)

    def opt_nested(self, name: str) -> "FieldReader | None":
        value = self._data.get(name)
        return None if value is None else self._map(name, value)

    def reject_unknown(self, allowed: frozenset[str]) -> None:
        """Strict mode: fail on the first field not in `allowed` (lenient mode ignores them)."""
        if not self.strict:
            return
        for key in self._data:
            if key not in allowed:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_FIELD, f"{key[:40]!r} is not a field of this message"
                )
