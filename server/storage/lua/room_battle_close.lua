-- room_battle_close: settle (close) this room's side of a battle, or read it once closed.
-- KEYS[1] room battle side (hash)  KEYS[2] room battle side's gifters (zset)  KEYS[3] room names
-- ARGV[1] battle id  ARGV[2] 1 = close now (cancel), 0 = only once due (window end + grace)
-- ARGV[3] ms an ended side is kept
-- Returns {state, score, top gifter, top gifter's name, top gifter's coins}; state 2: closed (now
-- or before: the score is final, no gift scores after it), 1: open (not due yet), 0: the side is
-- not this battle's (never opened here, or expired). Closing is one HSET in the room's
-- slot, the same slot that scores gifts: a score read as final never changes again.
-- `closed` is '1', or '2' when closed now (a cancel): a member joining after the end is shown
-- the battle as cancelled, not won (room_battle_side.lua).
local side = redis.call('HMGET', KEYS[1], 'id', 'due', 'closed', 'score')
if side[1] ~= ARGV[1] then return {0, 0, '', '', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not side[3] then
  if ARGV[2] ~= '1' and now < tonumber(side[2]) then return {1, tonumber(side[4]), '', '', 0} end
  redis.call('HSET', KEYS[1], 'closed', ARGV[2] == '1' and '2' or '1')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
end
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #top == 0 then return {2, tonumber(side[4]), '', '', 0} end
local name = redis.call('HGET', KEYS[3], top[1]) or top[1]
return {2, tonumber(side[4]), top[1], name, tonumber(top[2])}
