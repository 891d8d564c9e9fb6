"""A join's replay: the events a resuming member missed, pushed no faster than it reads them.

A client cut off as too slow (4008) resumes from its last seq, and what it missed can be more
than its writer's bound holds: pushed at once, the replay itself overflowed and the client was cut
again on every reconnect, never catching up. So the replay queues at most half the bound at a
time and waits for the client to read (`Outbox.writable`) before the next part. Live events wait
meanwhile in the member's join buffer, as they do while the snapshot is read, up to the room
history's length: past it the member is cut 4008 and resumes from where its replay got to."""

from __future__ import annotations

from typing import Any

from protocol import CloseCode
from server.hub.envelopes import event_message
from server.hub.rooms import Codecs, Member, MemberState, Outgoing, Room


async def replay(codecs: Codecs, room: Room, member: Member, st: MemberState,
                 events: list[dict[str, Any]], after: int, max_held: int) -> int | None:
    """Push the events after `after`, in order; the last seq pushed, or None if the member left
    or was cut meanwhile."""
    writer = member.writer
    budget = writer.max_bytes // 2
    last = after
    for ev in events:
        msg = event_message(ev)
        if msg is None or msg.seq <= last:
            continue
        data, size = Outgoing(codecs, msg).encoded(member.binary)
        if writer.buffered + size > budget:
            await writer.writable()
            if writer.closed or room.members.get(member) is not st:
                return None
            if st.buffer is not None and len(st.buffer) > max_held:
                member.kill(CloseCode.TOO_SLOW, "too slow: reconnect and resume")
                return None
        writer.push(data, size)
        last = msg.seq
    return last
