-- room_since: the room events after a seq, for a process recovering after pub/sub was lost.
-- KEYS[1] room seq  KEYS[2] room history
-- ARGV[1] after seq  ARGV[2] most events to return
-- Returns {seq, complete (1 | 0), events (encoded, oldest first)}; complete = 0 when the history
-- no longer reaches back to after+1 (the events it still has are returned anyway).
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[1])
local missed = seq - after
if missed <= 0 then return {seq, 1, {}} end
local limit = math.min(missed, tonumber(ARGV[2]))
local rows = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
local events = {}
for i = #rows, 1, -1 do events[#events + 1] = rows[i][2][4] end
local complete = 0
if #rows == missed and tonumber(rows[#rows][2][2]) == after + 1 then complete = 1 end
return {seq, complete, events}
