-- spend: a viewer spends coins on `count` of a gift in a live room. One atomic step, one slot.
-- KEYS[1] wallet hash ({w<N>}:wallet:<user>)   KEYS[2] tx record ({w<N>}:tx:<user>:<tx>)
-- KEYS[3] shard ledger stream                   KEYS[4] shard catalog hash (gift -> "coins s")
-- KEYS[5] shard live-rooms hash (room -> creator)
-- KEYS[6] shard blocks hash ("<room> <user>" -> 1, and "" once loaded: server/money/blockgate.py)
-- KEYS[7] the user's balance channel ({w<N>}:balance:<user>; lua/lib/balance_push.lua)
-- KEYS[8] the combo's record ({w<N>}:combo:<user>:<combo>), given with a combo id only
-- ARGV[1] user  ARGV[2] tx  ARGV[3] room  ARGV[4] gift  ARGV[5] count (1..1000, checked by caller)
-- ARGV[6] combo id or ''  ARGV[7] platform daily limit in coins (0 = none)  ARGV[8] tx record TTL
-- ARGV[9] combo timeout ms  ARGV[10] how long a combo record is kept, s (with a combo id only)
-- The wallet's own 'daily_limit' (set by the viewer) applies when lower than the platform's.
-- Returns {status, balance, coins, creator[, ledger entry id]}; status 'ok' (with the id of its
-- ledger stream entry, whose ms part is the time the ledger records: battles score by it), 'dup'
-- (the first result, unchanged, with "<debit ms>-0" in the entry id's place when the record has
-- it) or an error code ('room_not_live' is refined by the caller into room_ended / room_not_found).
-- The tx record is "<balance> <coins> <room> <gift> <count> <combo> @<debit ms> <creator>": the
-- first result around the parameters' fingerprint (ids without spaces; the creator, last, may
-- hold anything). The debit's time (its ledger entry's ms) is kept so that a retried tx is judged
-- against a battle's window by when it was debited, like the ledger, not by when it was retried.
-- A record without it (written before it was kept) still answers 'dup', without the time.
-- Refusals record nothing, so the tx id may be retried. 'self_gift': the sender owns the room (a
-- creator's own coins would come back as diamonds); checked here, atomically with the debit.
-- 'blocked': the room's creator or a moderator blocked the sender there; also checked here, so a
-- block written before this script runs refuses the gift, and none is debited after it. A blocks
-- hash without its "" field was lost (or never loaded): 'blocks_unloaded', nothing recorded; the
-- caller loads it from Postgres and calls again.
-- A combo's record is "<room> <gift> <deadline ms>", written by its first charged click: a click
-- naming another room or gift is refused ('combo_mismatch'), one after the deadline (the combo
-- timed out, or combo_close.lua set it to 0 on combo_end) is refused ('combo_not_found'); both
-- before any debit. The tx record is checked first, so a retried click is 'dup' even then.
-- An accepted spend publishes the new balance (reason 'gift', with the tx) on the user's channel.
--!include balance_push
local fp = ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6]
local rec = redis.call('GET', KEYS[2])
if rec then
  local bal, coins, seen, at, creator =
    string.match(rec, '^(%d+) (%d+) (%S+ %S+ %d+ %S*) @(%d+) (.*)$')
  if not bal then
    bal, coins, seen, creator = string.match(rec, '^(%d+) (%d+) (%S+ %S+ %d+ %S*) (.*)$')
  end
  if seen ~= fp then
    return {'tx_conflict', tonumber(redis.call('HGET', KEYS[1], 'coins') or '0'), 0, ''}
  end
  if at then return {'dup', tonumber(bal), tonumber(coins), creator, at .. '-0'} end
  return {'dup', tonumber(bal), tonumber(coins), creator}
end
local w = redis.call('HMGET', KEYS[1], 'coins', 'frozen', 'day', 'day_spent', 'daily_limit')
local balance = tonumber(w[1] or '0')
local item = redis.call('HGET', KEYS[4], ARGV[4])
if not item then return {'unknown_gift', balance, 0, ''} end
local price, streakable = string.match(item, '^(%d+) (%d)$')
if ARGV[6] ~= '' and streakable ~= '1' then return {'not_streakable', balance, 0, ''} end
local now = 0
if ARGV[6] ~= '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local combo = redis.call('GET', KEYS[8])
  if combo then
    local croom, cgift, deadline = string.match(combo, '^(%S+) (%S+) (%d+)$')
    if croom ~= ARGV[3] or cgift ~= ARGV[4] then return {'combo_mismatch', balance, 0, ''} end
    if now > tonumber(deadline) then return {'combo_not_found', balance, 0, ''} end
  end
end
local creator = redis.call('HGET', KEYS[5], ARGV[3])
if not creator then return {'room_not_live', balance, 0, ''} end
if creator == ARGV[1] then return {'self_gift', balance, 0, creator} end
local block = redis.call('HMGET', KEYS[6], '', ARGV[3] .. ' ' .. ARGV[1])
if not block[1] then return {'blocks_unloaded', balance, 0, creator} end
if block[2] then return {'blocked', balance, 0, creator} end
if w[2] == '1' then return {'wallet_frozen', balance, 0, creator} end
local coins = tonumber(price) * tonumber(ARGV[5])
if coins > balance then return {'insufficient_funds', balance, 0, creator} end
local limit, own = tonumber(ARGV[7]), tonumber(w[5] or '0')
if own > 0 and (limit == 0 or own < limit) then limit = own end
if limit > 0 then
  local day = tostring(math.floor(tonumber(redis.call('TIME')[1]) / 86400))
  local spent = 0
  if w[3] == day then spent = tonumber(w[4] or '0') end
  if spent + coins > limit then return {'daily_limit_exceeded', balance, 0, creator} end
  redis.call('HSET', KEYS[1], 'day', day, 'day_spent', spent + coins)
end
balance = redis.call('HINCRBY', KEYS[1], 'coins', -coins)
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[8], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. (now + tonumber(ARGV[9])),
    'EX', ARGV[10])
end
local entry = redis.call('XADD', KEYS[3], '*', 'k', 'gift', 'u', ARGV[1], 't', ARGV[2], 'r', ARGV[3],
  'g', ARGV[4], 'n', ARGV[5], 'cb', ARGV[6], 'a', coins, 'b', balance, 'o', creator)
redis.call('SET', KEYS[2], balance .. ' ' .. coins .. ' ' .. fp .. ' @' .. string.match(entry, '^%d+')
  .. ' ' .. creator, 'EX', ARGV[8])
balance_push(KEYS[1], KEYS[7], balance, '-', 'gift', ARGV[2])
return {'ok', balance, coins, creator, entry}
