"""What a worker sends back at the end: per member, flat arrays of what it saw and sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.client import RoomLog


@dataclass(slots=True)
class MemberResult:
    user: str
    room: str
    overlay: bool
    sender: bool
    slow: bool
    joined_seq: int
    connected: bool
    gap: bool
    closes: list[int | None]
    recv_seq: bytes
    recv_t: bytes
    send_t: bytes
    send_ack: bytes
    send_code: bytes
    send_kind: bytes


@dataclass(slots=True)
class WorkerResult:
    index: int
    members: list[MemberResult]
    rooms: dict[str, RoomLog]
    errors: dict[str, int]
    connect_errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    aborted: str | None = None
    frames: int = 0  # WebSocket messages received (a batch frame counts once)
    # Exceptions of the worker's own tasks (a bug in the load tester): any fails the verdict.
    failures: list[str] = field(default_factory=list)
    state: int = 0  # room state messages received (leaderboard, goal, viewers)
