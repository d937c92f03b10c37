-- prune_runs: delete at most `batch` run records: first those beyond the newest
-- `max_rows`, then those that finished before the cutoff, oldest first; then those
-- beyond each job's newest successes and other outcomes, for the jobs one SSCAN step
-- of the run jobs set names from `cursor`.
-- KEYS: 1 runs (all), 2 run records hash, 3 run jobs set
-- ARGV: 1 cutoff (µs) or '', 2 max_rows or '', 3 batch (> 0), 4 key prefix,
--       5 successes per job or '', 6 other outcomes per job or '', 7 SSCAN cursor
--       or '' to skip the per-job counts
-- Returns {deleted, the next cursor ('0' when the set was walked through)}.
local batch = tonumber(ARGV[3])
local prefix = ARGV[4]
local deleted = 0
local function drop(members)
  for _, member in ipairs(members) do
    -- The member is '<20 digits>:<job id>'.
    local job_id = string.sub(member, 22)
    local job_runs = prefix .. 'runs:' .. job_id
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
    redis.call('ZREM', job_runs, member)
    redis.call('ZREM', prefix .. 'runok:' .. job_id, member)
    redis.call('ZREM', prefix .. 'runfail:' .. job_id, member)
    if redis.call('ZCARD', job_runs) == 0 then
      redis.call('SREM', KEYS[3], job_id)
    end
    deleted = deleted + 1
  end
end
if ARGV[2] ~= '' then
  local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
  if excess > 0 then
    drop(redis.call('ZRANGE', KEYS[1], 0, math.min(excess, batch) - 1))
  end
end
if ARGV[1] ~= '' and deleted < batch then
  drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, batch - deleted))
end
local cursor = '0'
if ARGV[7] ~= '' and deleted < batch then
  local step = redis.call('SSCAN', KEYS[3], ARGV[7], 'COUNT', 100)
  cursor = step[1]
  for _, job_id in ipairs(step[2]) do
    for _, class in ipairs({{'runok:', ARGV[5]}, {'runfail:', ARGV[6]}}) do
      local limit = class[2]
      if limit ~= '' and deleted < batch then
        local class_runs = prefix .. class[1] .. job_id
        local excess = redis.call('ZCARD', class_runs) - tonumber(limit)
        if excess > 0 then
          drop(redis.call('ZRANGE', class_runs, 0, math.min(excess, batch - deleted) - 1))
        end
      end
    end
  end
  if deleted >= batch then
    -- Not every job of this step may have been trimmed: the next call looks again.
    cursor = ARGV[7]
  end
end
return {deleted, cursor}
