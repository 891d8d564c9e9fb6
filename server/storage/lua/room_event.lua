-- room_event: publish the room event of one accepted spend, at most once per transaction.
-- KEYS[1] room seq          KEYS[2] room history (stream)   KEYS[3] room published (zset)
-- KEYS[4] room leaderboard  KEYS[5] room names (hash)       KEYS[6] room goal (hash)
-- KEYS[7] room combos       KEYS[8] room combo deadlines    KEYS[9] room channel
-- KEYS[10] room settled combos  KEYS[11] room epoch (hash)
-- KEYS[12] room battle side (hash)  KEYS[13] room battle side's gifters (zset)
-- ARGV[1] dedup member (user:tx)  ARGV[2] room  ARGV[3] sender  ARGV[4] sender name
-- ARGV[5] gift  ARGV[6] count  ARGV[7] coins  ARGV[8] combo id ('' for a plain send)
-- ARGV[9] history maxlen  ARGV[10] history max age ms  ARGV[11] dedup window ms
-- ARGV[12] combo timeout ms  ARGV[13] leaderboard size  ARGV[14] most tx ids remembered
-- ARGV[15] when the spend was debited (ms, its ledger time; 0 when unknown: now is used)
-- Returns {1, seq, epoch, battle, score, ochan} when published, {0, 0, '', battle, score, ochan}
-- when this transaction had already been published; battle: the id of the room's battle when it
-- is due to be settled (its window and grace are over) but its side is not closed yet (the caller
-- settles it), else ''; score: the `{k: 'bt', s: {b, r, v}}` envelope of this side's score while
-- its side is open ('' otherwise), which the caller publishes on ochan, the opponent room's
-- channel (a duplicate returns it too, so a retry re-announces a score whose first announcement
-- died with its process).
-- Battle scoring: a gift debited inside the window of the room's open battle side adds its coins
-- to that side's score and its sender's, atomically with the event and so once per tx; the new
-- score rides on this room's event. The opponent's channel is in the opponent room's slot: on a
-- cluster, SPUBLISH to it from here fails (a script may touch one slot only), hence the caller.
-- One slot ({r:<room>}): idempotency, sequence, history, leaderboard, goal and PUBLISH are one
-- atomic step, so a retried tx can never produce a second event.
-- Event ids are <room>-<epoch>-<seq>: unique for ever, also after Redis lost its last writes.
--!include room_epoch
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local side = redis.call('HMGET', KEYS[12], 'id', 'start', 'end', 'closed', 'ochan', 'due')
local due = ''
if side[1] and not side[4] and now >= tonumber(side[6]) then due = side[1] end

-- This side's score for the opponent's channel: the side is open (the opponent's view keeps the
-- highest score it saw, so a late or repeated one is harmless).
local function score_envelope(score)
  if not side[1] or side[4] then return '' end
  return cmsgpack.pack({k = 'bt', s = {b = side[1], r = ARGV[2], v = tonumber(score)}})
end

if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return {0, 0, '', due, score_envelope(redis.call('HGET', KEYS[12], 'score') or 0), side[5] or ''}
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
-- Bounded by age and by count: a busy room must not keep a day of tx ids in memory.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[11]))
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[14]) - 1)

local room, sender, name, gift = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local count, coins, combo = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]

redis.call('ZINCRBY', KEYS[4], coins, sender)
redis.call('HSET', KEYS[5], sender, name)
local goal = nil
if redis.call('EXISTS', KEYS[6]) == 1 then
  local progress = redis.call('HINCRBY', KEYS[6], 'progress', coins)
  local g = redis.call('HMGET', KEYS[6], 'title', 'target')
  goal = {title = g[1] or '', target = tonumber(g[2]) or 1, progress = progress}
end

-- A click that raced its combo's settlement (the caller checks before spending) is already
-- debited: it is shown as a plain gift rather than reopening a settled combo.
if combo ~= '' and redis.call('ZSCORE', KEYS[10], sender .. '\0' .. combo) then
  combo = ''
end

local battle = nil
local at = tonumber(ARGV[15])
if at == 0 then at = now end
if side[1] and not side[4] and at >= tonumber(side[2]) and at < tonumber(side[3]) then
  local score = redis.call('HINCRBY', KEYS[12], 'score', coins)
  redis.call('ZINCRBY', KEYS[13], coins, sender)
  battle = {b = side[1], r = room, v = score}
end

local epoch = room_epoch(KEYS[1], KEYS[11], KEYS[2])
local seq = redis.call('INCR', KEYS[1])
local eid = room .. '-' .. epoch .. '-' .. seq
local ev
if combo == '' then
  ev = {type = 'gift', room = room, seq = seq, epoch = epoch, eid = eid, sender = sender,
        name = name, gift = gift, count = count, coins = coins, ts = now}
else
  -- A streak click: the combo's running totals live in the room slot until it settles.
  local key = sender .. '\0' .. combo
  local total, total_coins = count, coins
  local raw = redis.call('HGET', KEYS[7], key)
  if raw then
    local c = cmsgpack.unpack(raw)
    if c.gift == gift then
      total, total_coins = c.count + count, c.coins + coins
    end
    -- A different gift under a running combo id restarts the combo (its clicks stay debited
    -- and counted in the leaderboard; only the streak display restarts).
  end
  redis.call('HSET', KEYS[7], key, cmsgpack.pack({combo = combo, sender = sender, name = name,
    gift = gift, count = total, coins = total_coins}))
  redis.call('ZADD', KEYS[8], now + tonumber(ARGV[12]), key)
  ev = {type = 'combo', room = room, seq = seq, epoch = epoch, eid = eid, combo = combo,
        sender = sender, name = name, gift = gift, count = total, ts = now}
end

redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 's', seq, 'e', cmsgpack.pack(ev))
redis.call('XTRIM', KEYS[2], 'MINID', '~', now - tonumber(ARGV[10]))

local top = {}
local rows = redis.call('ZREVRANGE', KEYS[4], 0, tonumber(ARGV[13]) - 1, 'WITHSCORES')
for i = 1, #rows, 2 do
  top[#top + 1] = {user = rows[i], name = redis.call('HGET', KEYS[5], rows[i]) or rows[i],
                   coins = tonumber(rows[i + 1])}
end
redis.call('PUBLISH', KEYS[9], cmsgpack.pack({k = 'ev', ev = ev, top = top, goal = goal,
                                              bt = battle}))
local scored = ''
if battle then scored = score_envelope(battle.v) end
return {1, seq, epoch, due, scored, side[5] or ''}
