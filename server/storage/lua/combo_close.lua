-- combo_close: `combo_end` closes a combo on its sender's wallet shard before the room settles it,
-- so no click is charged after the settled event is built (spend.lua refuses it first).
-- KEYS[1] the combo's record ({w<N>}:combo:<user>:<combo>, "<room> <gift> <deadline ms>")
-- Returns 1 when a record was closed, 0 when there was none (never clicked, or long forgotten).
local rec = redis.call('GET', KEYS[1])
if not rec then return 0 end
local head = string.match(rec, '^(%S+ %S+) %d+$')
redis.call('SET', KEYS[1], head .. ' 0', 'KEEPTTL')
return 1
