-- recover.lua: hand the jobs of dead workers back (safe to run from many
-- workers at once: each step is atomic and a second run finds nothing), and
-- age the dead set (so it shrinks even when nothing is being buried).
--
-- KEYS[1]  workers ZSET       KEYS[2]  pending LIST
-- KEYS[3]  dead ZSET          KEYS[4]  stats HASH
-- ARGV[1]  dead-after window, ms: a worker whose heartbeat is older is dead
-- ARGV[2]  processing list key prefix     ARGV[3]  job key prefix
-- ARGV[4]  poison-pill cap: a job whose worker died this many times is buried
-- ARGV[5]  events channel     ARGV[6]  notify channel     ARGV[7] queue name
-- ARGV[8]  dead retention, s  ARGV[9]  dead max count     ARGV[10] dead max age, ms
-- ARGV[11] completed/cancelled retention, s (0: delete at once)
--
-- Recovered jobs go to the claim end of pending (they have waited already);
-- their interrupted attempt is not counted. A job whose cancellation was
-- requested ends cancelled instead of running again.
-- Returns {dead workers removed, jobs requeued, jobs buried}.

local now = now_ms()
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 100)
local requeued, buried = 0, 0
local cap = tonumber(ARGV[4])
local q = {stats = KEYS[4], events = ARGV[5], queue = ARGV[7], retention = ARGV[11]}
for _, worker in ipairs(stale) do
  local processing = ARGV[2] .. worker
  -- A list or record not here (its slot is moving): the worker stays in
  -- the set with what is left, for a later pass.
  local whole = here(processing, ARGV[3])
  while whole do
    local id = redis.call('LINDEX', processing, -1)
    if not id then break end
    local key = ARGV[3] .. id
    if not here(key, ARGV[3]) then
      whole = false
      break
    end
    redis.call('RPOP', processing)
    if redis.call('EXISTS', key) == 1 then
      local recoveries = redis.call('HINCRBY', key, 'recoveries', 1)
      local f = redis.call('HMGET', key, 'task', 'attempts', 'cancel')
      if recoveries >= cap and not f[3] then
        bury(KEYS[3], KEYS[4], key, ARGV[3], id, now,
          'its worker died while running it ' .. recoveries .. ' times (poison-pill cap ' .. cap .. ')',
          ARGV[8], ARGV[9], ARGV[10])
        publish_event(ARGV[5], id, ARGV[7], f[1], 'dead', f[2], worker, now,
          ',"error":"worker died while running it (poison-pill cap reached)"')
        buried = buried + 1
      else
        -- The interrupted attempt reached no outcome: it does not count
        -- against max_attempts (the poison-pill cap bounds recoveries).
        local state, attempt = hand_back(KEYS[2], key, id, q, worker, now)
        if state == 'pending' then
          publish_event(ARGV[5], id, ARGV[7], f[1], 'recovered', attempt, worker, now, nil)
          requeued = requeued + 1
        end
      end
    end
  end
  if whole then redis.call('ZREM', KEYS[1], worker) end
end
if requeued > 0 then
  redis.call('HINCRBY', KEYS[4], 'recovered', requeued)
  redis.call(PUBLISH, ARGV[6], requeued)
end
trim_dead(KEYS[3], ARGV[3], now, ARGV[9], ARGV[10], 1000)
return {#stale, requeued, buried}
