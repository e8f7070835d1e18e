-- common.lua: helpers prepended to every jobfleet script (not a script itself).
--
-- now_ms()            Redis' own clock in unix ms: the one clock for leases,
--                     heartbeats and schedules (hosts' clocks are never used).
-- publish_event(...)  publishes one event JSON line on a queue's events channel.
--                     `extra` is a raw JSON fragment (",\"result\":{...}") so a
--                     result the worker already serialized is not re-encoded.
-- bury(...)           moves a job to the dead set and enforces the dead set's
--                     caps (count and age), deleting the records it drops.
-- hand_back(...)      puts a job whose attempt reached no outcome (graceful
--                     hand-back, lost claim reply, dead worker) back at the
--                     claim end of pending, the attempt uncounted.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function publish_event(channel, id, queue, task, state, attempt, worker, ms, extra)
  redis.call('PUBLISH', channel,
    '{"id":' .. cjson.encode(id) ..
    ',"queue":' .. cjson.encode(queue) ..
    ',"task":' .. cjson.encode(task or '') ..
    ',"state":"' .. state .. '"' ..
    ',"attempt":' .. (tonumber(attempt) or 0) ..
    ',"worker":' .. cjson.encode(worker or '') ..
    ',"ms":' .. ms .. (extra or '') .. '}')
end

-- dead: the queue's dead ZSET; job_key: the job's HASH; retention_s: how long
-- the dead record is kept; max_count/max_age_ms: the dead set's caps.
local function bury(dead, stats, job_key, job_prefix, id, now, reason, retention_s, max_count, max_age_ms)
  redis.call('ZADD', dead, now, id)
  redis.call('HSET', job_key, 'state', 'dead', 'error', reason, 'finished_ms', now)
  redis.call('HDEL', job_key, 'cancel')
  if tonumber(retention_s) > 0 then redis.call('EXPIRE', job_key, retention_s) end
  redis.call('HINCRBY', stats, 'dead', 1)
  max_age_ms = tonumber(max_age_ms)
  if max_age_ms > 0 then
    local old = redis.call('ZRANGEBYSCORE', dead, '-inf', now - max_age_ms, 'LIMIT', 0, 100)
    for _, old_id in ipairs(old) do
      redis.call('DEL', job_prefix .. old_id)
      redis.call('ZREM', dead, old_id)
    end
  end
  max_count = tonumber(max_count)
  if max_count > 0 then
    local excess = redis.call('ZCARD', dead) - max_count
    if excess > 0 then
      local oldest = redis.call('ZRANGE', dead, 0, excess - 1)
      for _, old_id in ipairs(oldest) do
        redis.call('DEL', job_prefix .. old_id)
      end
      redis.call('ZREMRANGEBYRANK', dead, 0, excess - 1)
    end
  end
end


-- pending: the queue's pending LIST; key: the job's HASH. Returns the job's
-- attempts counter after the uncount.
local function hand_back(pending, key, id)
  local attempts = redis.call('HINCRBY', key, 'attempts', -1)
  if attempts < 0 then
    attempts = 0
    redis.call('HSET', key, 'attempts', 0)
  end
  redis.call('HSET', key, 'state', 'pending')
  redis.call('HDEL', key, 'worker')
  redis.call('RPUSH', pending, id)
  return attempts
end

