-- The double-entry ledger. One row per transaction (unique by its ledger key), two entries per
-- transaction that moves value, summing to zero per currency. Written only by the flusher
-- (server/money/flusher.py), from the wallet shards' Redis streams; read by history, reconcile, rebuild.
--
-- Ledger keys (tx_key): g:<viewer>:<tx> gift, c:<viewer>:<tx> its credit, p:<user>:<receipt>
-- purchase, a:<user>:<grant id> grant, r:<original key> chargeback, d:<creator>:<request> redeem.
-- Client ids never contain ':', so a key parses from the right and two keys never collide.

CREATE TABLE ledger_tx (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_key        text NOT NULL UNIQUE,
    kind          text NOT NULL
                  CHECK (kind IN ('gift', 'credit', 'purchase', 'grant', 'reverse', 'redeem')),
    user_id       text NOT NULL,         -- whose wallet the Lua script changed
    counterparty  text,                  -- gift: creator; credit: viewer; purchase: package; ...
    ref           text NOT NULL,         -- the caller's id: tx, receipt, grant id, request id
    coins         bigint NOT NULL DEFAULT 0,
    diamonds      bigint NOT NULL DEFAULT 0,
    balance_after bigint,                -- coins (diamonds for credit/redeem) after the script
    carry         bigint,                -- credit: the creator's rounding remainder after
    shortfall     bigint,                -- reverse: coins the wallet could not cover (frozen)
    room          text,
    gift          text,
    count         integer,
    combo         text,
    price_cents   bigint,
    currency      text,
    shard         integer NOT NULL,      -- the wallet shard whose stream carried it
    stream_ms     bigint NOT NULL,       -- the stream entry id (ms-seq): the script's order
    stream_seq    bigint NOT NULL,
    ts            timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_tx_user ON ledger_tx (user_id, id);
CREATE INDEX ledger_tx_purchase_ref ON ledger_tx (ref) WHERE kind = 'purchase';

-- Entries are written only by the statement that inserts their transaction (server/money/ledger.py), so
-- neither a foreign key nor a primary key is checked per row: each costs the flusher insert rate,
-- and reconcile verifies that every transaction has entries summing to zero per currency.
CREATE TABLE ledger_entries (
    tx_id     bigint NOT NULL,           -- ledger_tx.id
    account   text NOT NULL,             -- viewer:<id>, creator:<id>, platform:<name>
    currency  text NOT NULL CHECK (currency IN ('coin', 'diamond')),
    amount    bigint NOT NULL
);
CREATE INDEX ledger_entries_tx ON ledger_entries (tx_id);

-- No index on account: balances are whole-table aggregates (reconcile, rebuild); an index
-- would cost the flusher a fifth of its insert rate for no query that needs it today.

-- Balances of every account, derived (never stored twice).
CREATE VIEW ledger_balances AS
    SELECT account, currency, sum(amount)::bigint AS balance
    FROM ledger_entries GROUP BY account, currency;
