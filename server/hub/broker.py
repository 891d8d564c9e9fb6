"""The broker interface: publish/subscribe of opaque bytes between server processes.

Backends (Redis pub/sub in `server.hub.broker_redis`) carry payloads as `bytes` end to end and never
decode them: events are msgpack, and a transport that turns them into `str` breaks on the first
byte that is not UTF-8 (design.md 4a). Channels are names built by `server.storage.keys`.

Contract for every backend:
- `subscribe` returns only once the subscription is live on the server, so a caller that reads
  state *after* it returns cannot miss a message published after that read.
- `on_message` is called in the event loop, in the order the backend received the messages; an
  exception from it is logged and the message skipped (the listener never dies of a bad payload).
- After a lost connection the backend reconnects by itself, re-subscribes every channel, and then
  calls `on_resubscribed`: messages published meanwhile are lost to pub/sub, and the listener
  recovers them from the room history.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

MessageHandler = Callable[[str, bytes], None]
ResubscribedHandler = Callable[[], None]


def _ignore_message(channel: str, data: bytes) -> None:
    return None


def _ignore_resubscribed() -> None:
    return None


class Broker(ABC):
    def __init__(self) -> None:
        self.on_message: MessageHandler = _ignore_message
        self.on_resubscribed: ResubscribedHandler = _ignore_resubscribed

    @abstractmethod
    async def start(self) -> None:
        """Connect; returns once the first connection is up."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect and stop reconnecting."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Subscribe, returning once the server has confirmed the subscription."""

    @abstractmethod
    def unsubscribe(self, channel: str) -> None:
        """Stop receiving a channel (idempotent). Synchronous so that a subscribe right after it
        is ordered after it."""

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> int:
        """Publish bytes; returns how many subscribers (processes) received them."""

    @property
    @abstractmethod
    def channels(self) -> frozenset[str]:
        """The channels currently wanted (subscribed or being subscribed)."""
