-- acquire_due_jobs: reclaim expired leases, then lease up to `limit` due jobs.
-- KEYS: 1 jobs, 2 revs, 3 next, 4 due, 5 leases, 6 owners, 7 sched, 8 leasesched
-- ARGV: 1 now (µs), 2 limit, 3 lease expiry (µs), 4 owner
-- Returns a flat array: id, job JSON, revision, next run time (µs), and the holder of
-- the expired lease it was taken over from ('' if none, or this owner), per acquired
-- job, earliest first. `now` is the caller's clock, never Redis's TIME: simulated time works
-- and every scheduler judges "due" by its own clock, as with the other stores.

-- A lease that ran out means its owner died or froze: the job is due again at its
-- next run time (or stays idle if it was paused meanwhile). Its owner stays in the
-- owners hash until someone acquires the job (below) or a release, recovery or reap
-- ends it, so a late release of the old owner is still accepted if nobody took over
-- (the fencing rule, as the SQL store's lease_owner column).
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[1])
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[5], id)
  local next = redis.call('HGET', KEYS[3], id)
  if next then
    redis.call('ZADD', KEYS[4], next, id)
  end
end

local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return {}
end
-- They are the lowest ranks, so one call takes them all out of the due set.
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, #ids - 1)
local out = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[1], id)
  -- An index entry without a job cannot happen through these scripts; if one does,
  -- dropping it above was the repair.
  if json then
    local before = redis.call('HGET', KEYS[6], id)
    if not before or before == ARGV[4] then
      before = ''
    end
    redis.call('ZADD', KEYS[5], ARGV[3], id)
    redis.call('HSET', KEYS[6], id, ARGV[4])
    -- The schedule version the lease takes, which release.lua judges it by.
    local schedule = redis.call('HGET', KEYS[7], id)
    redis.call('HSET', KEYS[8], id, schedule and string.match(schedule, '^(%d+)') or '0')
    out[#out + 1] = id
    out[#out + 1] = json
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or '0'
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
    out[#out + 1] = before
  end
end
return out
