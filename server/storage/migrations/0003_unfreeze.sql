-- When an administrator last unfroze a wallet (after settling a chargeback's shortfall): rebuild
-- freezes a wallet only for shortfalls recorded after this.
ALTER TABLE wallet_settings ADD COLUMN unfrozen_at timestamptz;
ALTER TABLE wallet_settings ALTER COLUMN daily_limit SET DEFAULT 0;
