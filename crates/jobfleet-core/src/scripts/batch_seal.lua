-- batch_seal.lua: close a batch to new jobs, with its total.
--
-- KEYS[1]  the batch HASH (`P:{Q}:batch:<id>`)
-- ARGV[1]  (unused: kept so the layout stays stable)
-- ARGV[2]  the shard's key prefix (`P:{Q}:`)   ARGV[3]  the batch id
--
-- Sets `total` to the jobs submit created in it (`added`: an id that
-- already existed, or a unique duplicate, did not join); if every job is
-- final already, the batch finishes here (batch_fire in common.lua), else
-- when its last job ends. Returns the total, or -1 when the batch does not
-- exist or was sealed before.

if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'total') == 1 then
  return -1
end
local total = redis.call('HGET', KEYS[1], 'added') or '0'
redis.call('HSET', KEYS[1], 'total', total)
batch_fire(ARGV[2], ARGV[3], now_ms())
return tonumber(total)
