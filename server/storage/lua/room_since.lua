-- room_since: the room events after a position, for a process recovering after pub/sub was lost,
-- a seq that skipped ahead, or an event of another epoch.
-- KEYS[1] room seq  KEYS[2] room history  KEYS[3] room epoch (hash)
-- ARGV[1] after seq  ARGV[2] most events to return  ARGV[3] the caller's epoch ('' = current)
-- Returns {seq, complete (1 | 0), events (encoded, oldest first), epoch, start}. When the
-- caller's epoch is not the room's (the room's state was created afresh), the events are the
-- current epoch's from its start; the caller resets its position to (epoch, start) first.
-- complete = 0 when the history no longer reaches back to the first event asked for (the events
-- it still has are returned anyway).
--!include room_epoch
local epoch, start, seq = room_epoch(KEYS[1], KEYS[3], KEYS[2])
local after = tonumber(ARGV[1])
if ARGV[3] ~= '' and ARGV[3] ~= epoch then
  after = start
elseif seq < after then
  -- The seq went back under the same epoch (writes lost without a new Redis process, e.g. a
  -- restore by hand): start a new epoch now, so no event id is handed out twice from here on.
  epoch, start, seq = room_new_epoch(KEYS[1], KEYS[3], KEYS[2], room_run_id(), seq)
  after = start
end
local missed = seq - after
if missed <= 0 then return {seq, 1, {}, epoch, start} end
local limit = math.min(missed, tonumber(ARGV[2]))
local rows = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
local events = {}
for i = #rows, 1, -1 do events[#events + 1] = rows[i][2][4] end
local complete = 0
if #rows == missed and tonumber(rows[#rows][2][2]) == after + 1 then complete = 1 end
return {seq, complete, events, epoch, start}
