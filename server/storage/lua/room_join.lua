-- room_join: a joiner's snapshot of a room, read atomically, plus its presence and resume replay.
-- KEYS[1] room seq  KEYS[2] room history  KEYS[3] room meta  KEYS[4] room leaderboard
-- KEYS[5] room names  KEYS[6] room goal  KEYS[7] room presence (zset member -> expiry ms)
-- KEYS[8] room epoch (hash)
-- ARGV[1] presence member ('' = not a viewer: overlays are not counted)  ARGV[2] presence ttl ms
-- ARGV[3] resume after seq (-1 = no resume)  ARGV[4] most events to replay  ARGV[5] top size
-- ARGV[6] the epoch of the resume point ('' = not given: resume by seq alone)
-- Returns {seq, meta (flat hash), top (user, name, coins ...), goal (title, target, progress or
-- empty), viewers, resume ('none' | 'ok' | 'gap'), events (encoded, oldest first), epoch}.
-- A resume point of another epoch is a gap: its seqs name other events (or none) in this one.
-- Client input never starts an epoch (only the room's own state does), so a made-up resume
-- point cannot make every member of the room re-sync.
--!include room_epoch
-- The caller runs this only after its pub/sub subscription is confirmed, so every event with a
-- seq above the one returned here reaches it live.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HGETALL', KEYS[3])
if #meta == 0 then
  -- No such room: write nothing (a join of random names must not leave keys behind).
  return {0, meta, {}, {}, 0, 'none', {}, ''}
end
local epoch, _, seq = room_epoch(KEYS[1], KEYS[8], KEYS[2])

if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[7], now + tonumber(ARGV[2]), ARGV[1])
  -- The set outlives its last member by one ttl at most.
  redis.call('PEXPIRE', KEYS[7], 2 * tonumber(ARGV[2]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
local viewers = redis.call('ZCARD', KEYS[7])

local top = {}
local rows = redis.call('ZREVRANGE', KEYS[4], 0, tonumber(ARGV[5]) - 1, 'WITHSCORES')
for i = 1, #rows, 2 do
  top[#top + 1] = rows[i]
  top[#top + 1] = redis.call('HGET', KEYS[5], rows[i]) or rows[i]
  top[#top + 1] = rows[i + 1]
end
local goal = redis.call('HMGET', KEYS[6], 'title', 'target', 'progress')
if not goal[2] then goal = {} end

local after = tonumber(ARGV[3])
local resume, events = 'none', {}
if after >= 0 and ARGV[6] ~= '' and ARGV[6] ~= epoch then
  resume = 'gap'
elseif after >= 0 then
  local missed = seq - after
  if missed == 0 then
    resume = 'ok'
  elseif missed > 0 and missed <= tonumber(ARGV[4]) then
    -- Every seq is appended and the stream only loses its oldest entries, so the newest
    -- `missed` entries are exactly after+1..seq when the history still reaches back that far.
    local rows = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', missed)
    if #rows == missed and tonumber(rows[#rows][2][2]) == after + 1 then
      resume = 'ok'
      for i = #rows, 1, -1 do events[#events + 1] = rows[i][2][4] end
    else
      resume = 'gap'
    end
  else
    resume = 'gap'  -- older than the history, or a seq this room never reached
  end
end
return {seq, meta, top, goal, viewers, resume, events, epoch}
