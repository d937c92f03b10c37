-- release_jobs: write back a batch of acquired jobs, applying the revision rule of the
-- store contract (src/store/mod.rs) exactly as the memory store does.
-- KEYS: 1 jobs, 2 revs, 3 next, 4 due, 5 leases, 6 owners, 7 seq, 8 broken, 9 sched,
--       10 leasesched
-- ARGV: 1 owner, then four per job: id, acquired revision, released next run time (µs)
--       or '' (finished: remove the job), acquired next run time (µs) or ''
-- Next run times are compared as the decimal strings they were written as: exact.
-- Returns the ids fenced off: jobs that exist but that `owner` no longer holds (another
-- scheduler acquired them after the lease ran out, or a recovery or reap ended the
-- lease); nothing of those is written.
local owner = ARGV[1]
local fenced = {}
for i = 2, #ARGV, 4 do
  local id, revision, released, acquired = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = redis.call('HGET', KEYS[6], id)
  local exists = redis.call('HEXISTS', KEYS[1], id) == 1
  -- Removed while it ran: it stays removed. Quarantined: nothing to write back.
  -- Held by someone else, or by nobody: our lease is gone; the holder's release
  -- decides, and we must not end its lease under it (fencing, src/store/mod.rs).
  if exists and holder ~= owner and redis.call('SISMEMBER', KEYS[8], id) == 0 then
    fenced[#fenced + 1] = id
  elseif exists and redis.call('SISMEMBER', KEYS[8], id) == 0 then
    redis.call('ZREM', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    local current = redis.call('HGET', KEYS[3], id) or ''
    local taken = redis.call('HGET', KEYS[10], id)
    redis.call('HDEL', KEYS[10], id)
    local changed
    if taken then
      local schedule = redis.call('HGET', KEYS[9], id)
      changed = (schedule and string.match(schedule, '^(%d+)') or '0') ~= taken
    else
      -- A lease taken before the store kept schedule versions: next run times decide,
      -- as they did then.
      changed = redis.call('HGET', KEYS[2], id) ~= revision and current ~= acquired
    end
    if changed then
      -- Its schedule changed while acquired: the change wins, even at the next run
      -- time the job was taken at.
      if current ~= '' then
        redis.call('ZADD', KEYS[4], current, id)
      end
    elseif released == '' then
      -- The trigger is finished.
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
      redis.call('HDEL', KEYS[9], id)
    else
      -- Unchanged, or changed without touching the schedule: the run times just
      -- handled must not run again, so the released next run time applies.
      redis.call('HSET', KEYS[2], id, redis.call('INCR', KEYS[7]))
      redis.call('HSET', KEYS[3], id, released)
      redis.call('ZADD', KEYS[4], released, id)
    end
  end
end
return fenced
