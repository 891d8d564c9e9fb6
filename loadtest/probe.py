"""The last seq of each room, read the way any client would: join it and read `joined.seq`."""

from __future__ import annotations

import asyncio

from loadtest.client import ConnSpec, Member, RoomLog, Shared, new_counters
from loadtest.provision import Stage
from protocol import MsgpackCodec

ATTEMPTS = 3


async def final_seqs(ws_urls: list[str], st: Stage, timeout: float) -> dict[str, int | str]:
    """Room -> last seq, or the reason it could not be read (the verification then falls back to
    the highest seq any member saw)."""
    shared = Shared(MsgpackCodec(), {room: RoomLog() for room in st.rooms}, {}, new_counters(),
                    lambda: None)

    async def one(room: str) -> tuple[str, int | str]:
        last_error: Exception | None = None
        for attempt in range(ATTEMPTS):
            for url in ws_urls:  # any live server will do (chaos may have one down)
                spec = ConnSpec(f"{st.run}probe", st.probe_tokens[room], room)
                member = Member(spec, url, shared)
                try:
                    await member.open(timeout)
                    return room, member.joined_seq
                except Exception as exc:  # an overloaded server may refuse (`unavailable`)
                    last_error = exc
                finally:
                    member.close()
            await asyncio.sleep(0.5 * (attempt + 1))  # backoff before asking again
        return room, f"no server answered the probe: {last_error}"

    return dict(await asyncio.gather(*(one(room) for room in st.rooms)))
