"""The Postgres side of the ledger: stream entries -> transactions + double entries.

A ledger stream entry (written by a Lua script) becomes one `ledger_tx` row, unique by its ledger
key, and its entries (two per transaction that moves value, summing to zero per currency). A batch
is COPYed into session-temporary staging tables and moved by one `INSERT ... SELECT ... ON
CONFLICT (tx_key) DO NOTHING`: replaying a batch (a flusher killed after COMMIT, before XACK)
inserts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

# Platform accounts; users have viewer:<id> (coins) and creator:<id> (diamonds).
REVENUE = "platform:revenue"
DIAMOND_POOL = "platform:diamond_pool"
SALES = "platform:sales"
GRANTS = "platform:grants"
CHARGEBACKS = "platform:chargebacks"
PAYOUTS = "platform:payouts"

KINDS = ("gift", "credit", "purchase", "grant", "reverse", "redeem")


def tx_key(kind: str, user: str, ref: str, counterparty: str = "") -> str:
    """The ledger key of a transaction (see migrations/0001_ledger.sql)."""
    if kind == "gift":
        return f"g:{user}:{ref}"
    if kind == "credit":
        return f"c:{counterparty}:{ref}"
    if kind == "purchase":
        return f"p:{user}:{ref}"
    if kind == "grant":
        return f"a:{user}:{ref}"
    if kind == "reverse":
        return f"r:{ref}"
    if kind == "redeem":
        return f"d:{user}:{ref}"
    raise ValueError(f"unknown ledger kind {kind!r}")


_TX_COLUMNS = (
    "tx_key", "kind", "user_id", "counterparty", "ref", "coins", "diamonds", "balance_after",
    "carry", "shortfall", "room", "gift", "count", "combo", "price_cents", "currency", "shard",
    "stream_ms", "stream_seq", "ts",
)
_ENTRY_COLUMNS = ("tx_key", "shard", "stream_ms", "stream_seq", "account", "currency", "amount")


@dataclass(frozen=True, slots=True)
class StagedTx:
    """One stream entry, parsed: a `ledger_tx` row and its entries."""

    row: tuple[Any, ...]
    entries: list[tuple[Any, ...]]
    kind: str
    fields: Mapping[str, str]
    stream_id: str


def _opt_int(fields: Mapping[str, str], name: str) -> int | None:
    raw = fields.get(name)
    return int(raw) if raw not in (None, "") else None


def parse_entry(shard: int, stream_id: str, raw: Mapping[bytes, bytes]) -> StagedTx:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    kind, user, ref, other = f["k"], f["u"], f["t"], f.get("o", "")
    ms, seq = (int(p) for p in stream_id.split("-"))
    coins, diamonds = int(f.get("a") or 0), int(f.get("d") or 0)
    key = tx_key(kind, user, ref, other)
    row = (
        key, kind, user, other or None, ref, coins, diamonds, _opt_int(f, "b"),
        _opt_int(f, "cy"), _opt_int(f, "sh"), f.get("r") or None, f.get("g") or None,
        _opt_int(f, "n"), f.get("cb") or None, _opt_int(f, "pc"), f.get("cu") or None, shard,
        ms, seq, dt.datetime.fromtimestamp(ms / 1000, dt.UTC),
    )
    moves = _moves(kind, user, coins, diamonds)
    entries = [(key, shard, ms, seq, acct, cur, amt) for acct, cur, amt in moves if amt != 0]
    return StagedTx(row, entries, kind, f, stream_id)


def _moves(kind: str, user: str, coins: int, diamonds: int) -> list[tuple[str, str, int]]:
    if kind == "gift":
        return [(f"viewer:{user}", "coin", -coins), (REVENUE, "coin", coins)]
    if kind == "credit":
        return [(DIAMOND_POOL, "diamond", -diamonds), (f"creator:{user}", "diamond", diamonds)]
    if kind == "purchase":
        return [(SALES, "coin", -coins), (f"viewer:{user}", "coin", coins)]
    if kind == "grant":
        return [(GRANTS, "coin", -coins), (f"viewer:{user}", "coin", coins)]
    if kind == "reverse":
        return [(f"viewer:{user}", "coin", -coins), (CHARGEBACKS, "coin", coins)]
    if kind == "redeem":
        return [(f"creator:{user}", "diamond", -diamonds), (PAYOUTS, "diamond", diamonds)]
    raise ValueError(f"unknown ledger kind {kind!r}")


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_tx (
    tx_key text, kind text, user_id text, counterparty text, ref text, coins bigint,
    diamonds bigint, balance_after bigint, carry bigint, shortfall bigint, room text, gift text,
    count integer, combo text, price_cents bigint, currency text, shard integer,
    stream_ms bigint, stream_seq bigint, ts timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_entries (
    tx_key text, shard integer, stream_ms bigint, stream_seq bigint, account text,
    currency text, amount bigint
) ON COMMIT DELETE ROWS;
"""

_cols = ", ".join(_TX_COLUMNS)
# Entries join on the stream position as well as the key, so that a batch holding the same
# transaction twice (a replay) still gives each inserted transaction exactly its own entries.
_MOVE = f"""
WITH ins AS (
    INSERT INTO ledger_tx ({_cols})
    SELECT {_cols} FROM stage_tx
    ON CONFLICT (tx_key) DO NOTHING
    RETURNING id, tx_key, shard, stream_ms, stream_seq
), ent AS (
    INSERT INTO ledger_entries (tx_id, account, currency, amount)
    SELECT ins.id, e.account, e.currency, e.amount
    FROM ins JOIN stage_entries e USING (tx_key, shard, stream_ms, stream_seq)
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM ent)
"""


async def prepare(conn: asyncpg.Connection) -> None:
    """Create this session's staging tables (once per connection)."""
    await conn.execute(_STAGING)


async def write_batch(conn: asyncpg.Connection, batch: Sequence[StagedTx]) -> int:
    """Write a batch in one transaction; return how many transactions were new.
    The connection must have been `prepare`d."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "stage_tx", records=[t.row for t in batch], columns=_TX_COLUMNS
        )
        await conn.copy_records_to_table(
            "stage_entries", records=[e for t in batch for e in t.entries], columns=_ENTRY_COLUMNS
        )
        row = await conn.fetchrow(_MOVE)
    assert row is not None
    return int(row[0])


@dataclass(frozen=True, slots=True)
class LedgerTx:
    id: int
    tx_key: str
    kind: str
    user: str
    counterparty: str | None
    ref: str
    coins: int
    diamonds: int
    balance_after: int | None
    room: str | None
    gift: str | None
    count: int | None
    ts: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "tx": self.tx_key, "kind": self.kind, "ref": self.ref,
            "counterparty": self.counterparty, "coins": self.coins, "diamonds": self.diamonds,
            "balance_after": self.balance_after, "room": self.room, "gift": self.gift,
            "count": self.count, "ts": self.ts.isoformat(),
        }


_SELECT = """SELECT id, tx_key, kind, user_id, counterparty, ref, coins, diamonds,
                    balance_after, room, gift, count, ts FROM ledger_tx"""


def _tx(r: asyncpg.Record) -> LedgerTx:
    return LedgerTx(*r.values())


async def find_tx(pool: asyncpg.Pool, key: str) -> LedgerTx | None:
    row = await pool.fetchrow(f"{_SELECT} WHERE tx_key = $1", key)
    return _tx(row) if row else None


async def find_purchase(pool: asyncpg.Pool, receipt: str) -> LedgerTx | None:
    row = await pool.fetchrow(f"{_SELECT} WHERE kind = 'purchase' AND ref = $1", receipt)
    return _tx(row) if row else None


async def history(
    pool: asyncpg.Pool, user: str, *, before: int | None, limit: int
) -> list[LedgerTx]:
    """A user's transactions, newest first, paged by id (keyset: stable under inserts)."""
    rows = await pool.fetch(
        f"{_SELECT} WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3",
        user, before, limit,
    )
    return [_tx(r) for r in rows]


async def user_balances(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """user -> (coins, diamonds) according to the ledger."""
    rows = await pool.fetch(
        """SELECT account, currency, balance FROM ledger_balances
           WHERE account LIKE 'viewer:%' OR account LIKE 'creator:%'"""
    )
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        role, user = r["account"].split(":", 1)
        coins, diamonds = out.get(user, (0, 0))
        if role == "viewer" and r["currency"] == "coin":
            coins = r["balance"]
        elif role == "creator" and r["currency"] == "diamond":
            diamonds = r["balance"]
        out[user] = (coins, diamonds)
    return out
