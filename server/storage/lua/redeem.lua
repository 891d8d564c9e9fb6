-- redeem: a creator turns diamonds into a payout request; once per request id.
-- KEYS[1] wallet hash   KEYS[2] record ({w<N>}:tx:<user>:d:<request id>)
-- KEYS[3] shard ledger stream   KEYS[4] shard wallets index (set)
-- KEYS[5] the user's balance channel (lua/lib/balance_push.lua; reason 'redeem')
-- ARGV[1] user  ARGV[2] request id  ARGV[3] diamonds  ARGV[4] minimum diamonds per redemption
-- Returns {status, diamond balance}; status 'ok', 'dup', 'tx_conflict', 'out_of_range',
-- 'wallet_frozen' or 'insufficient_funds'. The record ("<balance> <diamonds>") never expires.
--!include balance_push
local rec = redis.call('GET', KEYS[2])
local have = tonumber(redis.call('HGET', KEYS[1], 'diamonds') or '0')
if rec then
  local bal, amount = string.match(rec, '^(%d+) (%d+)$')
  if amount ~= ARGV[3] then return {'tx_conflict', have} end
  return {'dup', tonumber(bal)}
end
local want = tonumber(ARGV[3])
if want < tonumber(ARGV[4]) then return {'out_of_range', have} end
if redis.call('HGET', KEYS[1], 'frozen') == '1' then return {'wallet_frozen', have} end
if want > have then return {'insufficient_funds', have} end
have = redis.call('HINCRBY', KEYS[1], 'diamonds', -want)
redis.call('SET', KEYS[2], have .. ' ' .. want)
redis.call('XADD', KEYS[3], '*', 'k', 'redeem', 'u', ARGV[1], 't', ARGV[2], 'd', want,
  'b', have)
balance_push(KEYS[1], KEYS[5], tonumber(redis.call('HGET', KEYS[1], 'coins') or '0'), have,
  'redeem', '')
return {'ok', have}
