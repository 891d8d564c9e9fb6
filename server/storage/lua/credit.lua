-- credit: a creator's diamonds for accepted gifts, on the creator's shard; once per gift.
-- KEYS[1] creator wallet hash   KEYS[2] creator shard ledger stream
-- KEYS[3] creator shard wallets index (set)
-- KEYS[4] the creator's balance channel (lua/lib/balance_push.lua; reason 'credit')
-- KEYS[4+i] credit record of gift i ({w<N>}:tx:<creator>:c:<viewer>:<tx>), i = 1..n
-- ARGV[1] creator  ARGV[2] diamonds per coin numerator  ARGV[3] denominator
-- ARGV[4] record TTL seconds; then 6 per gift i: viewer, tx, coins, room, gift id, count
-- Several gifts to one creator are credited in one call (the spend path batches them).
-- Rounding: diamonds = floor((carry + coins * num) / den), carry = the remainder, per creator;
-- so the diamonds of all credits always add up to floor(sum(coins) * num / den).
-- Returns {diamonds credited now, diamond balance}; a gift already credited adds nothing.
-- One balance push per call that credited anything (not one per gift).
--!include balance_push
local num, den, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local w = redis.call('HMGET', KEYS[1], 'carry', 'diamonds', 'coins')
local carry, balance = tonumber(w[1] or '0'), tonumber(w[2] or '0')
local credited, changed = 0, false
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local a = 5 + (i - 5) * 6
    local total = carry + tonumber(ARGV[a + 2]) * num
    local diamonds = math.floor(total / den)
    carry = total - diamonds * den
    balance = balance + diamonds
    credited = credited + diamonds
    changed = true
    redis.call('SET', KEYS[i], diamonds, 'EX', ttl)
    redis.call('XADD', KEYS[2], '*', 'k', 'credit', 'u', ARGV[1], 'o', ARGV[a], 't', ARGV[a + 1],
      'a', ARGV[a + 2], 'd', diamonds, 'cy', carry, 'b', balance, 'r', ARGV[a + 3],
      'g', ARGV[a + 4], 'n', ARGV[a + 5])
  end
end
if changed then
  redis.call('HSET', KEYS[1], 'diamonds', balance, 'carry', carry)
  redis.call('SADD', KEYS[3], ARGV[1])
  balance_push(KEYS[1], KEYS[4], tonumber(w[3] or '0'), balance, 'credit', '')
end
return {credited, balance}
