-- room_presence: refresh this process's viewers of a room and count every process's viewers.
-- KEYS[1] room presence (zset: connection id -> expiry ms)
-- ARGV[1] ttl ms (0: remove the given ids instead)  ARGV[2..] connection ids (none: just count)
-- Returns the number of unexpired members. Expiry, not bookkeeping, removes a crashed process's
-- connections; Redis's clock scores them, so processes need not agree on the time.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
if tonumber(ARGV[1]) == 0 then
  for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
  return redis.call('ZCOUNT', KEYS[1], now, '+inf')
end
for i = 2, #ARGV, 200 do
  local batch = {}
  for j = i, math.min(i + 199, #ARGV) do
    batch[#batch + 1] = expiry
    batch[#batch + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(batch))
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1])) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
