"""Baseline: raw COPY of ledger rows into the same table (`ledger_tx`), as fast as asyncpg goes.

One connection, 1,000 rows per transaction (the flusher's batch size), rows shaped like the
flusher's gift rows, into a throw-away schema migrated exactly like the real one. The flusher
does more per entry (read the stream, stage, `INSERT ... ON CONFLICT`, two ledger entries,
credit the creator, XACK, trim), which is why the goal is a fraction of this rate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import secrets
import time
from typing import Any

BATCH = 1000
COLUMNS = (
    "tx_key", "kind", "user_id", "counterparty", "ref", "coins", "balance_after", "room", "gift",
    "count", "shard", "stream_ms", "stream_seq", "ts",
)


async def _measure(dsn: str, rows: int) -> dict[str, Any]:
    import asyncpg

    from server.storage import db

    schema = f"ltcopy_{secrets.token_hex(4)}"
    await db.migrate(dsn, schema)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        now = dt.datetime.now(dt.UTC)
        ms = int(time.time() * 1000)
        records = [
            (f"g:u{i % 500}:t{i}", "gift", f"u{i % 500}", "creator", f"t{i}", 1, 10**9 - i,
             "room", "rose", 1, i % 16, ms + i // 10, i % 10, now)
            for i in range(rows)
        ]
        started = time.monotonic()
        for i in range(0, rows, BATCH):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "ledger_tx", records=records[i:i + BATCH], columns=COLUMNS
                )
        elapsed = time.monotonic() - started
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return {"rows": rows, "rows_per_s": round(rows / elapsed, 1), "batch": BATCH}


def measure_copy(dsn: str, rows: int = 100_000) -> dict[str, Any]:
    # Called from inside the harness's event loop: the measurement gets a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _measure(dsn, rows)).result(timeout=300)
