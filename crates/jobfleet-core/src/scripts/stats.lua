-- stats.lua: one consistent read of a queue's sizes and counters.
--
-- KEYS[1]  pending LIST       KEYS[2]  scheduled ZSET
-- KEYS[3]  dead ZSET          KEYS[4]  workers ZSET
-- KEYS[5]  stats HASH
-- ARGV[1]  processing list key prefix
-- ARGV[2]  job key prefix
-- ARGV[3]  meta HASH of this shard
-- ARGV[4]  parked SET (tasks with a parked LIST `<ARGV[4]>:<task>`)
-- (in ARGV as claim.lua has them: often missing, and read with pcall, so a
-- migrating slot does not turn the read away)
--
-- "pending" is the length of the pending list and of the parked lists, less
-- the jobs cancelled in place that no claim has skipped yet (the stats
-- field `pending_cancelled`).
-- "active" is the sum of the processing lists of the workers in the set.
-- "oldest" is how long the job at the claim end of pending has been ready,
-- in ms (since it was created, or since its run-at time for a delayed or
-- retried one): the queue's latency, the oldest of the parked lists' heads
-- included. 0 when nothing is pending.
-- Returns {pending, scheduled, dead, active, workers, oldest, then the
-- stats HASH as field, value pairs, then `parked:<task>`, length pairs for
-- each parked list, `paused`, <when> if the queue is paused, and
-- `limit:concurrency` and `limit:rate` when set}.

local active = 0
local workers = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, worker in ipairs(workers) do
  active = active + redis.call('LLEN', ARGV[1] .. worker)
end
local cancelled = tonumber(redis.call('HGET', KEYS[5], 'pending_cancelled')) or 0
local oldest = 0
local now = now_ms()
local function look(list)
  local head = redis.call('LINDEX', list, -1)
  if head and here(ARGV[2] .. head, ARGV[2]) then
    local f = redis.call('HMGET', ARGV[2] .. head, 'created_ms', 'run_at_ms')
    local ready = math.max(tonumber(f[1]) or 0, tonumber(f[2]) or 0)
    if ready > 0 then oldest = math.max(oldest, since(now, ready)) end
  end
end
look(KEYS[1])
local waiting = redis.call('LLEN', KEYS[1])
local parked = {}
local tasks = redis.pcall('SMEMBERS', ARGV[4])
if type(tasks) ~= 'table' or tasks.err then tasks = {} end
for _, task in ipairs(tasks) do
  local list = ARGV[4] .. ':' .. task
  local n = redis.pcall('LLEN', list)
  if type(n) == 'number' and n > 0 then
    look(list)
    waiting = waiting + n
    parked[#parked + 1] = 'parked:' .. task
    parked[#parked + 1] = n
  end
end
local out = {
  math.max(0, waiting - cancelled),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  active,
  #workers,
  oldest,
}
for _, v in ipairs(redis.call('HGETALL', KEYS[5])) do out[#out + 1] = v end
for _, v in ipairs(parked) do out[#out + 1] = v end
local meta = redis.pcall('HMGET', ARGV[3], 'paused', 'concurrency', 'rate')
if type(meta) == 'table' and not meta.err then
  for i, field in ipairs({'paused', 'limit:concurrency', 'limit:rate'}) do
    if meta[i] then
      out[#out + 1] = field
      out[#out + 1] = meta[i]
    end
  end
end
return out
