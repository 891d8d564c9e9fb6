-- credited: which of these gifts a creator has already been credited for. Read-only.
-- KEYS[i] credit record of gift i ({w<N>}:tx:<creator>:c:<viewer>:<tx>), all on the creator's
-- shard. The flusher asks this before re-running credit.lua, so that the common case (credited
-- right after the spend) costs a key per gift instead of the gift's whole description.
-- Returns {1 if credited else 0, ...} in KEYS order.
local out = {}
for i = 1, #KEYS do out[i] = redis.call('EXISTS', KEYS[i]) end
return out
