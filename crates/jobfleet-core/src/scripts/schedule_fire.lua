-- schedule_fire.lua: fire one tick of a schedule, exactly once.
--
-- KEYS[1]  schedule_next ZSET  KEYS[2]  schedules HASH
-- KEYS[3]  pending LIST        KEYS[4]  stats HASH
-- ARGV[1]  schedule name       ARGV[2]  the tick being fired (its score now, ms)
-- ARGV[3]  the schedule JSON as the caller read it
-- ARGV[4]  the next tick, ms (0: none, the schedule ends)
-- ARGV[5]  notify channel      ARGV[6]  the tick's job id
-- ARGV[7]  job key prefix      ARGV[8]  schedule_last HASH
-- ARGV[9]  task                ARGV[10] payload (JSON text)
-- ARGV[11] max_attempts        ARGV[12] timeout_ms
--
-- Fires only if the schedule still waits for this tick and is unchanged:
-- of several workers that saw the tick due, one moves the schedule on and
-- creates the job, in this one script; the others find the score moved and
-- do nothing. The job is created as submit.lua creates a pending one (plus
-- `schedule`), unless a record of that id exists already. The job key and
-- schedule_last are in ARGV: they often do not exist yet, and a Cluster
-- refuses a script whose declared key is missing from a migrating slot.
-- Returns 0 (not fired: another worker did, or the schedule changed),
-- 1 (fired; the job existed already) or 2 (fired, job created).

-- Mid-migration, the job key or schedule_last may have moved already: fire
-- nothing rather than move the schedule on and create no job.
if not (here(ARGV[7] .. ARGV[6], ARGV[7]) and here(ARGV[8], ARGV[7])) then return 0 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
if ARGV[4] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
end
redis.call('HSET', ARGV[8], ARGV[1], ARGV[2])
local key = ARGV[7] .. ARGV[6]
if redis.call('EXISTS', key) == 1 then return 1 end
redis.call('HSET', key, 'task', ARGV[9], 'payload', ARGV[10], 'state', 'pending',
  'max_attempts', ARGV[11], 'timeout_ms', ARGV[12], 'created_ms', now_ms(), 'schedule', ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'submitted', 1)
redis.call(PUBLISH, ARGV[5], 1)
return 2
