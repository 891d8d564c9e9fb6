-- credit: a creator's diamonds for one accepted gift, on the creator's shard; once per gift.
-- KEYS[1] creator wallet hash   KEYS[2] credit record ({w<N>}:tx:<creator>:c:<viewer>:<tx>)
-- KEYS[3] creator shard ledger stream   KEYS[4] creator shard wallets index (set)
-- ARGV[1] creator  ARGV[2] viewer  ARGV[3] gift tx id  ARGV[4] coins of the gift
-- ARGV[5] diamonds per coin numerator  ARGV[6] denominator  ARGV[7] record TTL seconds
-- ARGV[8] room  ARGV[9] gift id  ARGV[10] count
-- Rounding: diamonds = floor((carry + coins * num) / den), carry = the remainder, per creator;
-- so the diamonds of all credits always add up to floor(sum(coins) * num / den).
-- Returns {status 'ok'|'dup', diamonds credited by this gift, diamond balance}.
local done = redis.call('GET', KEYS[2])
if done then
  return {'dup', tonumber(done), tonumber(redis.call('HGET', KEYS[1], 'diamonds') or '0')}
end
local carry = tonumber(redis.call('HGET', KEYS[1], 'carry') or '0')
local total = carry + tonumber(ARGV[4]) * tonumber(ARGV[5])
local den = tonumber(ARGV[6])
local diamonds = math.floor(total / den)
carry = total - diamonds * den
local balance = redis.call('HINCRBY', KEYS[1], 'diamonds', diamonds)
redis.call('HSET', KEYS[1], 'carry', carry)
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SET', KEYS[2], diamonds, 'EX', ARGV[7])
redis.call('XADD', KEYS[3], '*', 'k', 'credit', 'u', ARGV[1], 'o', ARGV[2], 't', ARGV[3],
  'a', ARGV[4], 'd', diamonds, 'cy', carry, 'b', balance, 'r', ARGV[8], 'g', ARGV[9],
  'n', ARGV[10])
return {'ok', diamonds, balance}
