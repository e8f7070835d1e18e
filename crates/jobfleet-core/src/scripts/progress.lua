-- progress.lua: record how far a running job has come, and say so.
--
-- KEYS[1]  job HASH
-- ARGV[1]  worker id           ARGV[2]  fraction done, 0 to 1 (decimal text)
-- ARGV[3]  message ('' : none) ARGV[4]  events channel
-- ARGV[5]  queue name          ARGV[6]  job id
--
-- Only the worker that holds the job (its record says `active` and names
-- this worker) may report: a worker declared dead, or a late report after
-- the outcome, is refused. Sets `progress` and `progress_msg` (the message
-- is removed when empty) and publishes a `progress` event carrying both.
-- The fields stay on the record: a recovered job shows its last attempt's
-- progress until the next attempt reports.
-- Returns 1 when recorded, 0 when refused.

local f = redis.call('HMGET', KEYS[1], 'state', 'worker', 'task', 'attempts')
local fraction = tonumber(ARGV[2])
if f[1] ~= 'active' or f[2] ~= ARGV[1] or not fraction or fraction < 0 or fraction > 1 then
  return 0
end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[2])
  redis.call('HDEL', KEYS[1], 'progress_msg')
else
  redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'progress_msg', ARGV[3])
end
publish_event(ARGV[4], ARGV[6], ARGV[5], f[3], 'progress', f[4], ARGV[1], now_ms(),
  ',"progress":' .. ARGV[2] .. ',"message":' .. cjson.encode(ARGV[3]))
return 1
