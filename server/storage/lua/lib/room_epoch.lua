-- room_epoch (included by the room scripts that touch a room's seq and history; no KEYS of its
-- own: the including script passes its seq, epoch and history keys, all in the room's slot).
-- A room's events are numbered (epoch, seq). The epoch is a new random id whenever the room's
-- seq/history state may have been created afresh or rolled back:
-- - the seq key does not exist (a new room, or the state was lost entirely);
-- - the Redis process holding the room is not the one that last wrote its epoch (its run_id
--   differs): a restart or a failover, after which the last writes may be gone (AOF `everysec`
--   loses up to a second on a machine crash; a promoted replica may lag). Redis cannot tell a
--   clean restart from a lossy one, so both start a new epoch;
-- - (room_since) a server delivered a seq above the room's current one under the same epoch.
-- A new epoch keeps the seq counting from where it stands and empties the history: the history
-- only ever holds the current epoch's events, and every position in an epoch is >= its `start`.
-- The epoch hash: id, run (the run_id that wrote it), start (the seq when it began).

local function room_run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

-- A new epoch starting at `seq`; returns id, start, seq.
local function room_new_epoch(seq_key, epoch_key, history_key, run, seq)
  local t = redis.call('TIME')
  -- TIME and run_id make the input unique; SHA1 only shortens it (the id is in every event id).
  local id = string.sub(redis.sha1hex(run .. ':' .. t[1] .. ':' .. t[2] .. ':' .. seq_key), 1, 12)
  redis.call('SET', seq_key, seq)
  redis.call('HSET', epoch_key, 'id', id, 'run', run, 'start', seq)
  redis.call('DEL', history_key)
  return id, seq, seq
end

-- The room's current epoch (starting a new one when needed); returns id, start, seq.
local function room_epoch(seq_key, epoch_key, history_key)
  local run = room_run_id()
  local e = redis.call('HMGET', epoch_key, 'id', 'run', 'start')
  local seq = redis.call('GET', seq_key)
  if e[1] and e[2] == run and seq then
    return e[1], tonumber(e[3]), tonumber(seq)
  end
  return room_new_epoch(seq_key, epoch_key, history_key, run, tonumber(seq or '0'))
end
