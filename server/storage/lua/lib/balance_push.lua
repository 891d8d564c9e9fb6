-- balance_push (included by every script that changes a wallet's coins or diamonds; no KEYS of
-- its own: the including script passes its wallet hash and the user's balance channel, both in
-- the wallet's slot). The push is published inside the script that made the change, so it is
-- atomic with it: no process can change a balance and fail to announce it.
-- The wallet's 'bv' field counts its changes: the push's version, so a client can drop a push
-- older than one it already applied (pushes from two processes may cross on the way).
-- Payload (text): "<version> <coins> <diamonds or -> <reason> <tx or empty>"; the tx is given for
-- a gift only (its sender's connection holds the push until the gift's ack is written).
-- One HINCRBY and one PUBLISH per change (server/live/user_pushes.py reads it).

local function balance_push(wallet_key, channel, coins, diamonds, reason, tx)
  local version = redis.call('HINCRBY', wallet_key, 'bv', 1)
  redis.call('PUBLISH', channel,
    version .. ' ' .. coins .. ' ' .. diamonds .. ' ' .. reason .. ' ' .. tx)
end
