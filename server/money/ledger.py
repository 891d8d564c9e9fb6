"""The Postgres side of the ledger: stream entries -> transactions + double entries.

A ledger stream entry (written by a Lua script) becomes one `ledger_tx` row, unique by its ledger
key, and its entries (two per transaction that moves value, summing to zero per currency). A batch
is COPYed into a session-temporary staging table and moved by one `INSERT ... SELECT ... ON
CONFLICT (tx_key) DO NOTHING` that also writes the entries from the posting rules (`POSTINGS`):
replaying a batch (a flusher killed after COMMIT, before XACK) inserts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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


_STAGE_COLUMNS = (
    "tx_key", "kind", "user_id", "counterparty", "ref", "coins", "diamonds", "balance_after",
    "carry", "shortfall", "room", "gift", "count", "combo", "price_cents", "currency", "shard",
    "stream_ms", "stream_seq",
)

# The posting rules: each kind moves `coins` or `diamonds` from one account to another. An
# account ending in ':' is the transaction's user's (viewer:<user> / creator:<user>).
POSTINGS: dict[str, tuple[str, str, str]] = {  # kind -> (from, to, currency)
    "gift": ("viewer:", REVENUE, "coin"),
    "credit": (DIAMOND_POOL, "creator:", "diamond"),
    "purchase": (SALES, "viewer:", "coin"),
    "grant": (GRANTS, "viewer:", "coin"),
    "reverse": ("viewer:", CHARGEBACKS, "coin"),
    "redeem": ("creator:", PAYOUTS, "diamond"),
}


class StagedTx(NamedTuple):
    """One stream entry, parsed: exactly a row of the staging table (`_STAGE_COLUMNS`)."""

    tx_key: str
    kind: str
    user: str
    counterparty: str | None
    ref: str
    coins: int
    diamonds: int
    balance_after: int | None
    carry: int | None
    shortfall: int | None
    room: str | None
    gift: str | None
    count: int | None
    combo: str | None
    price_cents: int | None
    currency: str | None
    shard: int
    stream_ms: int
    stream_seq: int


def entry_ms(stream_id: str) -> int:
    """A ledger stream entry's Redis time in ms (its id is "<ms>-<seq>"): the ledger's `ts`."""
    return int(stream_id.partition("-")[0])


def parse_entry(shard: int, stream_id: str, raw: Mapping[bytes, bytes]) -> StagedTx:
    # Inlined (no helper calls): this runs once per ledger entry, and was a quarter of the
    # flusher's CPU while catching up.
    g = raw.get
    kind, user, ref = raw[b"k"].decode(), raw[b"u"].decode(), raw[b"t"].decode()
    other = o.decode() if (o := g(b"o")) else None
    if kind not in POSTINGS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    ms, _, seq = stream_id.partition("-")
    return StagedTx(
        tx_key(kind, user, ref, other or ""), kind, user, other, ref, int(g(b"a") or 0),
        int(g(b"d") or 0),
        int(v) if (v := g(b"b")) else None,
        int(v) if (v := g(b"cy")) else None,
        int(v) if (v := g(b"sh")) else None,
        v.decode() if (v := g(b"r")) else None,
        v.decode() if (v := g(b"g")) else None,
        int(v) if (v := g(b"n")) else None,
        v.decode() if (v := g(b"cb")) else None,
        int(v) if (v := g(b"pc")) else None,
        v.decode() if (v := g(b"cu")) else None,
        shard, int(ms), int(seq),
    )


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_tx (
    tx_key text, kind text, user_id text, counterparty text, ref text, coins bigint,
    diamonds bigint, balance_after bigint, carry bigint, shortfall bigint, room text, gift text,
    count integer, combo text, price_cents bigint, currency text, shard integer,
    stream_ms bigint, stream_seq bigint
) ON COMMIT DELETE ROWS
"""

_cols = ", ".join(_STAGE_COLUMNS)
_rules = ", ".join(f"('{k}', '{a}', '{b}', '{c}')" for k, (a, b, c) in POSTINGS.items())
# One statement: new transactions, then their two entries each (from the posting rules), zero
# amounts skipped. A replayed transaction conflicts on tx_key, is not returned, gets no entries.
_MOVE = f"""
WITH rules (kind, src, dst, currency) AS (VALUES {_rules}),
ins AS (
    INSERT INTO ledger_tx ({_cols}, ts)
    SELECT {_cols}, to_timestamp(stream_ms / 1000.0) FROM stage_tx
    ON CONFLICT (tx_key) DO NOTHING
    RETURNING id, kind, user_id, coins, diamonds
), ent AS (
    INSERT INTO ledger_entries (tx_id, account, currency, amount)
    SELECT ins.id,
           CASE WHEN p.account LIKE '%:' THEN p.account || ins.user_id ELSE p.account END,
           r.currency,
           p.sign * CASE r.currency WHEN 'coin' THEN ins.coins ELSE ins.diamonds END
    FROM ins JOIN rules r USING (kind)
    CROSS JOIN LATERAL (VALUES (r.src, -1), (r.dst, 1)) AS p (account, sign)
    WHERE CASE r.currency WHEN 'coin' THEN ins.coins ELSE ins.diamonds END <> 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM ent)
"""

# Gifts of the batch whose creator credit is not in the ledger: the flusher runs their credit
# (idempotent) before acknowledging them. Usually none: the credit's entry was in the same read.
_UNCREDITED = """
SELECT s.tx_key FROM stage_tx s
WHERE s.kind = 'gift' AND s.counterparty IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ledger_tx c WHERE c.tx_key = 'c:' || substr(s.tx_key, 3))
"""


async def prepare(conn: asyncpg.Connection) -> None:
    """Create this session's staging table (once per connection)."""
    await conn.execute(_STAGING)


async def write_batch(
    conn: asyncpg.Connection, batch: Sequence[StagedTx]
) -> tuple[int, set[str]]:
    """Write a batch in one transaction. Returns how many transactions were new, and the keys
    of the batch's gifts without a credit in the ledger yet. The connection must have been
    `prepare`d."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "stage_tx", records=batch, columns=_STAGE_COLUMNS
        )
        row = await conn.fetchrow(_MOVE)
        uncredited = {r[0] for r in await conn.fetch(_UNCREDITED)}
    assert row is not None
    return int(row[0]), uncredited


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
    pool: asyncpg.Pool, user: str, *, before: int | None, limit: int, kind: str | None = None
) -> list[LedgerTx]:
    """A user's transactions (of one kind, or all), newest first, paged by id (keyset: stable
    under inserts)."""
    rows = await pool.fetch(
        f"{_SELECT} WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)"
        " AND ($4::text IS NULL OR kind = $4) ORDER BY id DESC LIMIT $3",
        user, before, limit, kind,
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
