-- A viewer's own daily spending limit (0 = only the platform's). Not money, so not in the
-- ledger; kept here so that `rebuild` restores it with the balances.
CREATE TABLE wallet_settings (
    user_id     text PRIMARY KEY,
    daily_limit bigint NOT NULL CHECK (daily_limit >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
