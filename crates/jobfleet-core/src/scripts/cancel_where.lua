-- cancel_where.lua: cancel, or count, the waiting jobs of one list or set
-- that match a filter, one chunk per call (`jobfleet cancel --task`,
-- `jobfleet queue purge`).
--
-- KEYS[1]  the LIST (pending, or a parked list) or the scheduled ZSET to sweep
-- KEYS[2]  stats HASH
-- ARGV[1]  'list' | 'zset'      ARGV[2]  offset to start at
-- ARGV[3]  how many entries to look at
-- ARGV[4]  job key prefix       ARGV[5]  task to match ('': any task)
-- ARGV[6]  events channel       ARGV[7]  queue name
-- ARGV[8]  retention of a cancelled record, s
-- ARGV[9]  the reason, stored as the job's `error` ('': none)
-- ARGV[10] 'count' (change nothing) | 'cancel'
--
-- A list is read from its push end (index 0) on: pushes shift entries
-- towards the claim end and claims take them from there, so no entry
-- present when the sweep started is passed over. Matching pending entries
-- are cancelled in place, as cancel.lua does (`queued=1`, the id left for a
-- claim to skip). A scheduled job is removed from the set and cancelled at
-- once, so the next offset of a ZSET sweep does not count it; the ZSET is
-- read from its latest run-at down, since promotion takes entries from the
-- other end and would shift ranks under the sweep. Only jobs
-- whose record says `pending` (in a list) or `scheduled` (in the set) match;
-- running, final and stale entries are left alone.
-- Returns {matched, next offset, entries looked at}.

local count_only = ARGV[10] == 'count'
local offset = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local ids
if ARGV[1] == 'zset' then
  ids = redis.call('ZREVRANGE', KEYS[1], offset, offset + n - 1)
else
  ids = redis.call('LRANGE', KEYS[1], offset, offset + n - 1)
end
local want = ARGV[1] == 'zset' and 'scheduled' or 'pending'
local reason = ARGV[9] ~= '' and ARGV[9] or nil
local q = {stats = KEYS[2], events = ARGV[6], queue = ARGV[7], retention = ARGV[8]}
local now = nil
local matched, removed = 0, 0
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if here(key, ARGV[4]) then
    local f = redis.call('HMGET', key, 'state', 'task', 'attempts', 'batch')
    if f[1] == want and (ARGV[5] == '' or f[2] == ARGV[5]) then
      matched = matched + 1
      if not count_only then
        now = now or now_ms()
        if want == 'scheduled' then
          redis.call('ZREM', KEYS[1], id)
          removed = removed + 1
          end_cancelled(q, key, id, f[2], f[3], '', now, reason)
        else
          if f[4] then batch_done(string.sub(ARGV[4], 1, -5), f[4], 'cancelled', now) end
          redis.call('HSET', key, 'state', 'cancelled', 'finished_ms', now, 'queued', 1)
          if reason then redis.call('HSET', key, 'error', reason) end
          redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
          redis.call('HINCRBY', KEYS[2], 'pending_cancelled', 1)
          local extra = nil
          if reason then extra = ',"error":' .. cjson.encode(reason) end
          publish_event(ARGV[6], id, ARGV[7], f[2], 'cancelled', f[3], '', now, extra)
        end
      end
    end
  end
end
return {matched, offset + #ids - removed, #ids}
