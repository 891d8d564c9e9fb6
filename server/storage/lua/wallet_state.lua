-- wallet_state: a wallet's balances and the viewer's own settings (wallet.py). Read-only.
-- KEYS[1] the wallet hash ({w<N>}:wallet:<user>)
-- Returns {coins, diamonds, carry, frozen, daily_limit}, false for a field not set.
return redis.call('HMGET', KEYS[1], 'coins', 'diamonds', 'carry', 'frozen', 'daily_limit')
