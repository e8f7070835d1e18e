-- batch_seal.lua: close a batch to new jobs, with its total.
--
-- KEYS[1]  the batch HASH (`P:{Q}:batch:<id>`)
-- ARGV[1]  how many jobs it holds   ARGV[2]  the shard's key prefix (`P:{Q}:`)
-- ARGV[3]  the batch id
--
-- Sets `total`; if every job is final already, the batch finishes here
-- (batch_fire in common.lua), else when its last job ends. Returns 1, or 0
-- when the batch does not exist or was sealed before.

if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'total') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'total', ARGV[1])
batch_fire(ARGV[2], ARGV[3], now_ms())
return 1
