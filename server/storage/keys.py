"""Every Redis key and channel name giftwire uses, built in one place.

Each Lua script touches exactly one Redis Cluster slot, so keys that a script uses together share a
hash tag (the part in braces):
- `{w<N>}`: wallet shard N. A wallet's balance, its idempotency records and balance channel, the
  shard's ledger stream and the shard's copies of the gift catalog, the live-room set and its
  users' room blocks live together, so one spend is one slot. Wallets hash onto `wallet_shards`
  shards (CRC32 of the user id).
- `{r:<room>}`: one room: sequence and its epoch, history, leaderboard, goal, presence, combos,
  its side of a battle.
`tests/test_keys.py` checks, for every script, that its KEYS map to one slot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def _safe(ident: str) -> str:
    # A brace inside an id would move the hash tag; ids are validated upstream, this is a backstop.
    return ident.replace("{", "%7B").replace("}", "%7D")


def crc16(data: bytes) -> int:
    """CRC16/XMODEM, the function Redis Cluster uses for key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cluster_slot(key: str | bytes) -> int:
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % 16384


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "gw:"
    wallet_shards: int = 16

    # -- wallets ------------------------------------------------------------------------------
    def shard_of(self, user: str) -> int:
        return zlib.crc32(user.encode()) % self.wallet_shards

    def _w(self, shard: int) -> str:
        return f"{self.prefix}{{w{shard}}}"

    def wallet(self, user: str) -> str:
        """Hash: coins, diamonds, frozen, carry, day, day_spent."""
        return f"{self._w(self.shard_of(user))}:wallet:{_safe(user)}"

    def tx(self, user: str, tx: str) -> str:
        """Idempotency record of one transaction id of one user."""
        return f"{self._w(self.shard_of(user))}:tx:{_safe(user)}:{_safe(tx)}"

    def combo(self, user: str, combo: str) -> str:
        """A combo's first click and deadline, beside its sender's wallet (spend.lua checks it)."""
        return f"{self._w(self.shard_of(user))}:combo:{_safe(user)}:{_safe(combo)}"

    def balance_channel(self, user: str) -> str:
        """Pub/sub channel of a user's balance pushes, published by the scripts that change the
        wallet (in its slot, so the push is atomic with the change; server/live/user_pushes.py)."""
        return f"{self._w(self.shard_of(user))}:balance:{_safe(user)}"

    def ledger_stream(self, shard: int) -> str:
        return f"{self._w(shard)}:ledger"

    def ledger_streams(self) -> list[str]:
        return [self.ledger_stream(s) for s in range(self.wallet_shards)]

    def catalog(self, shard: int) -> str:
        """Hash gift id -> price/flags; one copy per shard so the spend script stays in one slot."""
        return f"{self._w(shard)}:catalog"

    def live_rooms(self, shard: int) -> str:
        """Hash room -> creator of live rooms; one copy per shard, like the catalog."""
        return f"{self._w(shard)}:live"

    def blocks(self, shard: int) -> str:
        """Hash "<room> <user>" -> 1 of the room blocks of this shard's users, plus the field ""
        once loaded from Postgres: spend.lua refuses a blocked sender atomically with the debit,
        and a lost hash is told apart from "no blocks" (server/money/blockgate.py)."""
        return f"{self._w(shard)}:blocks"

    def wallets_index(self, shard: int) -> str:
        """Set of the user ids with a wallet on this shard (reconcile walks it)."""
        return f"{self._w(shard)}:wallets"

    # -- rooms --------------------------------------------------------------------------------
    def _r(self, room: str) -> str:
        return f"{self.prefix}{{r:{_safe(room)}}}"

    def room(self, room: str) -> str:
        """Hash: creator, live, title, started_at."""
        return f"{self._r(room)}:meta"

    def room_seq(self, room: str) -> str:
        return f"{self._r(room)}:seq"

    def room_epoch(self, room: str) -> str:
        """Hash id, run, start: the epoch of the room's seq and history (lua/lib/room_epoch.lua)."""
        return f"{self._r(room)}:epoch"

    def room_history(self, room: str) -> str:
        """Stream of encoded room events, bounded by length and age."""
        return f"{self._r(room)}:history"

    def room_published(self, room: str) -> str:
        """Idempotency of room events: which transactions already produced an event."""
        return f"{self._r(room)}:published"

    def room_leaderboard(self, room: str) -> str:
        return f"{self._r(room)}:top"

    def room_goal(self, room: str) -> str:
        return f"{self._r(room)}:goal"

    def room_presence(self, room: str) -> str:
        return f"{self._r(room)}:presence"

    def room_combos(self, room: str) -> str:
        return f"{self._r(room)}:combos"

    def room_channel(self, room: str) -> str:
        return f"{self._r(room)}:events"

    # Hub additions (server/hub/hub.py, roomstate.py).
    def room_names(self, room: str) -> str:
        """Hash user -> display name of the room's gifters (the leaderboard shows names)."""
        return f"{self._r(room)}:names"

    def room_combo_due(self, room: str) -> str:
        """Zset: running combo -> deadline ms (the server-side combo timeout)."""
        return f"{self._r(room)}:combodue"

    def room_combos_done(self, room: str) -> str:
        """Zset: settled combo -> settle time ms (late clicks are refused, not restarted)."""
        return f"{self._r(room)}:combodone"

    # Overlay additions (server/live/overlay_keys.py, overlay_settings.py).
    def room_overlay(self, room: str) -> str:
        """Hash: the cached overlay `key`, its `creator` and the `settings` JSON (Postgres holds
        the truth; a missing field is refilled from there)."""
        return f"{self._r(room)}:overlay"

    # Battles (server/live/battles.py): each room's slot holds its own side of a battle.
    def room_battle(self, room: str) -> str:
        """Hash: id, start, end (ms), opp, ochan, score, closed: this room's side of its battle."""
        return f"{self._r(room)}:battle"

    def room_battle_top(self, room: str) -> str:
        """Zset: gifter -> coins scored for this room's side of its battle."""
        return f"{self._r(room)}:battletop"

    # -- operations (server/web/admin/) -------------------------------------------------------
    # One slot ({ops}) so the operator view reads every heartbeat with one MGET on a cluster too.
    def processes(self) -> str:
        """Zset: server process name -> its last heartbeat, ms (the operator view's index)."""
        return f"{self.prefix}{{ops}}:processes"

    def process(self, name: str) -> str:
        """A server process's heartbeat (JSON of its own numbers), expiring with the process."""
        return f"{self.prefix}{{ops}}:process:{_safe(name)}"

    def reconcile_result(self) -> str:
        """JSON of the last reconcile run from the operator view (running, agree, differ...)."""
        return f"{self.prefix}{{ops}}:reconcile"

    def reconcile_lock(self) -> str:
        """Held (with a TTL) while one process runs the operator view's reconcile."""
        return f"{self.prefix}{{ops}}:reconcile:lock"

    # -- auth ---------------------------------------------------------------------------------
    def revoked(self, token_id: str) -> str:
        return f"{self.prefix}revoked:{_safe(token_id)}"

    def revocation_channel(self) -> str:
        """Pub/sub channel announcing each newly revoked token id to every process (one slot,
        `{auth}`: a sharded subscription on a cluster is one node's; server/edge/revocations.py)."""
        return f"{self.prefix}{{auth}}:revocations"
