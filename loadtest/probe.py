"""The last seq of each room, read the way any client would: join it and read `joined.seq`."""

from __future__ import annotations

import asyncio

from loadtest.client import ConnSpec, Member, RoomLog, Shared
from loadtest.provision import Stage
from protocol import MsgpackCodec


async def final_seqs(ws_urls: list[str], st: Stage, timeout: float) -> dict[str, int]:
    shared = Shared(MsgpackCodec(), {room: RoomLog() for room in st.rooms}, {},
                    dict.fromkeys(("sent", "accepted", "rejected", "received", "closed",
                                   "other_errors"), 0), lambda: None)

    async def one(room: str) -> tuple[str, int]:
        last_error: Exception | None = None
        for url in ws_urls:  # any live server will do (chaos may have one down)
            member = Member(ConnSpec(f"{st.run}probe", st.probe_tokens[room], room), url, shared)
            try:
                await member.open(timeout)
                return room, member.joined_seq
            except Exception as exc:
                last_error = exc
            finally:
                member.close()
        raise RuntimeError(f"no server answered the probe of room {room}: {last_error}")

    return dict(await asyncio.gather(*(one(room) for room in st.rooms)))
