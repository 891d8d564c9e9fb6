-- room_battle_open: open this room's side of a battle (one slot, {r:<room>}).
-- KEYS[1] room battle side (hash)  KEYS[2] room battle side's gifters (zset)
-- ARGV[1] battle id  ARGV[2] window start ms  ARGV[3] window end ms  ARGV[4] opponent room
-- ARGV[5] opponent room's channel  ARGV[6] ms an unsettled side is kept after its end
-- ARGV[7] this room's creator  ARGV[8] when the side may be settled, ms (window end + grace)
-- Returns 1 when opened (or already open for this battle: a retried start), 0 when the room's
-- side belongs to another battle that is not settled yet (the room is busy).
local cur = redis.call('HMGET', KEYS[1], 'id', 'closed')
if cur[1] == ARGV[1] then return 1 end
if cur[1] and not cur[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'start', ARGV[2], 'end', ARGV[3], 'opp', ARGV[4],
  'ochan', ARGV[5], 'score', 0, 'creator', ARGV[7],
  'due', ARGV[8])
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[6]))
return 1
