-- deposit: coins into a wallet for a verified purchase or an admin grant; once per reference.
-- KEYS[1] wallet hash   KEYS[2] record ({w<N>}:tx:<user>:p:<receipt> or :a:<grant id>)
-- KEYS[3] shard ledger stream   KEYS[4] shard wallets index (set)
-- KEYS[5] the user's balance channel (lua/lib/balance_push.lua; reason: the kind)
-- ARGV[1] user  ARGV[2] kind ('purchase'|'grant')  ARGV[3] reference (receipt or grant id)
-- ARGV[4] coins  ARGV[5] counterparty (package id or admin user)  ARGV[6] price in cents (or 0)
-- ARGV[7] currency (or '')
-- The record ("<balance> <kind> <coins> <counterparty>") never expires: money in is rare and a
-- replayed receipt must be refused however late it comes.
-- Returns {status 'ok'|'dup'|'tx_conflict', balance}.
--!include balance_push
local fp = ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5]
local rec = redis.call('GET', KEYS[2])
if rec then
  local bal, seen = string.match(rec, '^(%d+) (.*)$')
  if seen ~= fp then
    return {'tx_conflict', tonumber(redis.call('HGET', KEYS[1], 'coins') or '0')}
  end
  return {'dup', tonumber(bal)}
end
local balance = redis.call('HINCRBY', KEYS[1], 'coins', ARGV[4])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SET', KEYS[2], balance .. ' ' .. fp)
redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'u', ARGV[1], 't', ARGV[3], 'a', ARGV[4],
  'b', balance, 'o', ARGV[5], 'pc', ARGV[6], 'cu', ARGV[7])
balance_push(KEYS[1], KEYS[5], balance, '-', ARGV[2], '')
return {'ok', balance}
