-- add_job(s) / replace_job / update_job / update_job_if: write jobs and index them, in
-- one step.
-- KEYS: 1 jobs, 2 revs, 3 next, 4 due, 5 leases, 6 broken, 7 seq, 8 sched
-- ARGV: 1 mode ('add' | 'replace' | 'update' | 'update_if:REVISION'), 2 the wake-up
--       channel, then four per job: id, job JSON, next run time (µs) or '', and its
--       schedule key (its trigger and whether it is paused, as text)
-- Returns the new revision of each job in order; on the first job that 'add' finds
-- taken (-1) or 'update' finds missing (-2) it returns that code last and stops, and
-- the jobs before it stay written (the contract of JobStore::add_jobs).
-- 'update_if:REVISION' is 'update' of one job whose stored revision must be REVISION:
-- otherwise nothing is written and the answer is {-3, the revision it has}.
local mode = ARGV[1]
local expected = nil
if string.sub(mode, 1, 10) == 'update_if:' then
  expected = string.sub(mode, 11)
  mode = 'update'
end
local out = {}
-- The earliest next run time written, announced once at the end (store/wake.rs).
local earliest, earliest_text = nil, nil
local function announce()
  if earliest_text then
    redis.call('PUBLISH', ARGV[2], earliest_text)
  end
end
for i = 3, #ARGV, 4 do
  local id, json, next = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = redis.sha1hex(ARGV[i + 3])
  local exists = redis.call('HEXISTS', KEYS[1], id) == 1
  if mode == 'add' and exists then
    out[#out + 1] = -1
    announce()
    return out
  end
  if mode == 'update' and not exists then
    out[#out + 1] = -2
    announce()
    return out
  end
  if expected then
    local current = redis.call('HGET', KEYS[2], id)
    if current ~= expected then
      return {-3, tonumber(current) or 0}
    end
  end
  -- One counter for all jobs, never reset (not even by remove_all_jobs): a job removed
  -- and added again under its id must not get back a revision a late release carries.
  local revision = redis.call('INCR', KEYS[7])
  -- The schedule version (the ground rules of src/store/mod.rs): a new trigger, a
  -- pause or resume, or a new next run time bumps it; a job added starts at 0. A job
  -- written before the store kept versions has none: only its next run time can tell.
  local version = 0
  if exists then
    local stored = redis.call('HGET', KEYS[8], id)
    local old_version, old_key = 0, nil
    if stored then
      local v, k = string.match(stored, '^(%d+) (%x+)$')
      old_version, old_key = tonumber(v) or 0, k
    end
    version = old_version
    if (stored and old_key ~= key) or (redis.call('HGET', KEYS[3], id) or '') ~= next then
      version = old_version + 1
    end
  end
  redis.call('HSET', KEYS[8], id, string.format('%d %s', version, key))
  redis.call('HSET', KEYS[1], id, json)
  redis.call('HSET', KEYS[2], id, revision)
  -- Valid JSON again (the caller serialized it): a quarantined job is back in service.
  redis.call('SREM', KEYS[6], id)
  if next == '' then
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  else
    local at = tonumber(next)
    if at and (not earliest or at < earliest) then
      earliest, earliest_text = at, next
    end
    redis.call('HSET', KEYS[3], id, next)
    -- A leased job stays leased (the memory store's `put`): its owner's release, or
    -- the lease's expiry, puts it back among the due jobs at the time set here.
    if redis.call('ZSCORE', KEYS[5], id) then
      redis.call('ZREM', KEYS[4], id)
    else
      redis.call('ZADD', KEYS[4], next, id)
    end
  end
  out[#out + 1] = revision
end
announce()
return out
