-- room_status: tell every process that a room went live or ended (room lifecycle, streams.py).
-- KEYS[1] room channel
-- ARGV[1] '1' live, '0' ended
-- Returns the number of processes that heard it.
return redis.call('PUBLISH', KEYS[1], cmsgpack.pack({k = 'st', live = (ARGV[1] == '1')}))
