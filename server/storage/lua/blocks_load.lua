-- blocks_load: fill a wallet shard's blocks hash from Postgres, unless it is loaded already.
-- KEYS[1] shard blocks hash ({w<N>}:blocks)
-- ARGV[1] seconds the hash lives (0: for good; a load while Postgres is down writes no blocks and
--         lives briefly, so spends go on and the next load after it expires reads Postgres)
-- ARGV[2..] the shard's blocks as "<room> <user>" fields (any number, possibly none)
-- Returns 1 when it loaded, 0 when the hash was loaded meanwhile (its "" field exists). A loader
-- that read Postgres before a concurrent unblock can only write before the "" field exists, and
-- an unblock removes its field only after loading (blockgate.py): a stale block cannot outlive it.
if redis.call('HEXISTS', KEYS[1], '') == 1 then return 0 end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '1') end
redis.call('HSET', KEYS[1], '', '1')
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
