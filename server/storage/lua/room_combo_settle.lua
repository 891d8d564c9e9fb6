-- room_combo_settle: settle combos into one `gift` event each: one combo, or every one due.
-- KEYS[1] room seq  KEYS[2] room history  KEYS[3] room combos  KEYS[4] room combo deadlines
-- KEYS[5] room channel  KEYS[6] room settled combos (zset, kept `ARGV[6]` ms)  KEYS[7] room epoch
-- ARGV[1] room  ARGV[2] combo key (sender NUL combo id) or '' for "every combo past its deadline"
-- ARGV[3] history maxlen  ARGV[4] history max age ms  ARGV[5] most combos to settle
-- ARGV[6] how long settled combos are remembered, ms
-- Returns the number of combos settled. HDEL decides: across processes, a combo settles once.
--!include room_epoch
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local room = ARGV[1]

local due
if ARGV[2] ~= '' then
  due = {ARGV[2]}
else
  due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
end

local settled = 0
for _, key in ipairs(due) do
  local raw = redis.call('HGET', KEYS[3], key)
  redis.call('ZREM', KEYS[4], key)
  if raw then
    redis.call('HDEL', KEYS[3], key)
    redis.call('ZADD', KEYS[6], now, key)
    local c = cmsgpack.unpack(raw)
    local epoch = room_epoch(KEYS[1], KEYS[7], KEYS[2])
    local seq = redis.call('INCR', KEYS[1])
    local ev = {type = 'gift', room = room, seq = seq, epoch = epoch,
                eid = room .. '-' .. epoch .. '-' .. seq,
                sender = c.sender, name = c.name, gift = c.gift, count = c.count,
                coins = c.coins, combo = c.combo, ts = now}
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 's', seq, 'e', cmsgpack.pack(ev))
    redis.call('XTRIM', KEYS[2], 'MINID', '~', now - tonumber(ARGV[4]))
    redis.call('PUBLISH', KEYS[5], cmsgpack.pack({k = 'ev', ev = ev}))
    settled = settled + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[6]))
return settled
