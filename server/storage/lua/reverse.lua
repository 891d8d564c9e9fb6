-- reverse: a chargeback of an earlier purchase or grant; once per original transaction.
-- KEYS[1] wallet hash   KEYS[2] record ({w<N>}:tx:<user>:r:<original ledger key>)
-- KEYS[3] shard ledger stream   KEYS[4] shard wallets index (set)
-- KEYS[5] the user's balance channel (lua/lib/balance_push.lua; reason 'reversal')
-- ARGV[1] user  ARGV[2] original ledger tx key  ARGV[3] coins to take back  ARGV[4] admin user
-- A wallet never goes negative: it gives what it has, the rest is the shortfall, and a wallet
-- with a shortfall is frozen (cannot spend) until an administrator settles it.
-- Returns {status 'ok'|'dup', balance, coins taken, shortfall}.
--!include balance_push
local rec = redis.call('GET', KEYS[2])
if rec then
  local bal, took, short = string.match(rec, '^(%d+) (%d+) (%d+)$')
  return {'dup', tonumber(bal), tonumber(took), tonumber(short)}
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'coins') or '0')
local want = tonumber(ARGV[3])
local take = math.min(balance, want)
local short = want - take
balance = redis.call('HINCRBY', KEYS[1], 'coins', -take)
if short > 0 then redis.call('HSET', KEYS[1], 'frozen', '1') end
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SET', KEYS[2], balance .. ' ' .. take .. ' ' .. short)
redis.call('XADD', KEYS[3], '*', 'k', 'reverse', 'u', ARGV[1], 't', ARGV[2], 'a', take,
  'sh', short, 'b', balance, 'o', ARGV[4])
balance_push(KEYS[1], KEYS[5], balance, '-', 'reversal', '')
return {'ok', balance, take, short}
