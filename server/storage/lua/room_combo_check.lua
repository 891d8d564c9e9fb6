-- room_combo_check: may a click join this combo? (checked before the spend, so a late click
-- costs nothing).
-- KEYS[1] room settled combos (zset: sender NUL combo id -> settle time ms)
-- ARGV[1] sender NUL combo id
-- Returns 1 when the combo has already settled, else 0.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
return 0
