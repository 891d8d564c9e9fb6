-- room_battle_side: read this room's side of its battle (read-only; one slot).
-- KEYS[1] room battle side (hash)  KEYS[2] room battle side's gifters (zset)  KEYS[3] room names
-- Returns {id or '', start, end, opp, score, closed (0 open, 1 closed, 2 closed by a cancel),
-- top gifter, name, coins, now ms, creator}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'id', 'start', 'end', 'opp', 'score', 'closed', 'creator')
if not s[1] then return {'', 0, 0, '', 0, 0, '', '', 0, now, ''} end
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local user, name, coins = '', '', 0
if #top > 0 then
  user, coins = top[1], tonumber(top[2])
  name = redis.call('HGET', KEYS[3], user) or user
end
return {s[1], tonumber(s[2]), tonumber(s[3]), s[4], tonumber(s[5]), tonumber(s[6] or 0), user, name,
        coins, now, s[7] or ''}
