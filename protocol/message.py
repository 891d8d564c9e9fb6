"""The base every wire message shares: a `TYPE`, `to_dict`, and validating `from_dict`.

Concrete messages are frozen, slotted, keyword-only dataclasses whose attribute names are their
wire field names, so `to_dict` is one generic loop and the allowed-field set is derived, never
written twice. Each message writes only `_parse`, the one place its validation rules live.
"""

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from protocol.errors import ProtocolError
from protocol.fields import FieldReader
from protocol.limits import MAX_REQUEST_ID_LEN


class Message:
    """A protocol message. Subclasses are registered with `registry(...)`."""

    __slots__ = ()

    TYPE: ClassVar[str]
    # Declared so type checkers accept subclasses as dataclasses; `@dataclass` sets it.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    # Filled in by `registry`: wire field names in declaration order, and those plus "type".
    _FIELDS: ClassVar[tuple[str, ...]]
    _ALLOWED: ClassVar[frozenset[str]]

    def to_dict(self) -> dict[str, Any]:
        """The wire map: `type` first, then fields in declaration order, `None`s left out."""
        out: dict[str, Any] = {"type": self.TYPE}
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> Self:
        """Validate a decoded map (its `type` already matched) and build the message.

        Strict mode enforces every limit and rejects unknown fields; lenient mode, for reading
        server messages, checks types only so newer servers stay readable.
        """
        reader = FieldReader(data, strict=strict)
        try:
            cls._preflight(reader)
            reader.reject_unknown(cls._ALLOWED)
            return cls._parse(reader)
        except ProtocolError as exc:
            exc.request_id = readable_request_id(data)
            raise

    @classmethod
    def _preflight(cls, r: FieldReader) -> None:
        """Checks that must win over field errors (a newer hello is `unsupported_version`)."""

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        raise NotImplementedError


def readable_request_id(data: Mapping[str, Any]) -> str | None:
    """The message's `id` if it is itself valid, so an error reply can still be correlated."""
    try:
        return FieldReader(data, strict=True).opt_ident("id", MAX_REQUEST_ID_LEN)
    except ProtocolError:
        return None


M = TypeVar("M", bound=Message)


def registry(table: dict[str, type[M]]) -> Callable[[type[M]], type[M]]:
    """A class decorator that fills in a message's field metadata and adds it to `table`.

    Apply it above `@dataclass`: the slotted dataclass is a new class, and that is the one to
    register.
    """

    def register(cls: type[M]) -> type[M]:
        if cls.TYPE in table:
            raise ValueError(f"duplicate message type {cls.TYPE!r}")
        cls._FIELDS = tuple(f.name for f in dataclasses.fields(cls))
        cls._ALLOWED = frozenset(cls._FIELDS) | {"type"}
        table[cls.TYPE] = cls
        return cls

    return register


class ClientMessage(Message):
    """Base of the messages a client sends."""

    __slots__ = ()


class ServerMessage(Message):
    """Base of the messages the server sends."""

    __slots__ = ()


_client_table: dict[str, type[ClientMessage]] = {}
_server_table: dict[str, type[ServerMessage]] = {}
client_message = registry(_client_table)
server_message = registry(_server_table)

# type string -> class, one table per direction (both have a `gift`). Complete once the message
# modules are imported, which `protocol` and `protocol.codec` do.
CLIENT_MESSAGES: Mapping[str, type[ClientMessage]] = MappingProxyType(_client_table)
SERVER_MESSAGES: Mapping[str, type[ServerMessage]] = MappingProxyType(_server_table)
