-- finish_runs: free the instance slots of finished runs and record them, in one round
-- trip and all at once (a script runs atomically).
-- KEYS: 1 runs (all), 2 run records hash, 3 run sequence, 4 run jobs set, then per
--       run: the runs of its job, its job's instance set, its job's runs of the
--       record's class (runok: or runfail:)
-- ARGV: 1 owner .. "\31", then per run: finished_at (µs), record JSON, job id,
--       1 if it frees a slot else 0
-- Slots and members as in release_instance.lua and record_run.lua.
local mine = ARGV[1]
local count = (#KEYS - 4) / 3
for index = 1, count do
  local job_runs = KEYS[2 + 3 * index]
  local instances = KEYS[3 + 3 * index]
  local class_runs = KEYS[4 + 3 * index]
  local finished_at = ARGV[4 * index - 2]
  local json = ARGV[4 * index - 1]
  local job_id = ARGV[4 * index]
  if ARGV[4 * index + 1] == '1' then
    for _, member in ipairs(redis.call('ZRANGE', instances, 0, -1)) do
      if string.sub(member, 1, #mine) == mine then
        redis.call('ZREM', instances, member)
        break
      end
    end
  end
  local member = string.format('%020d', redis.call('INCR', KEYS[3])) .. ':' .. job_id
  redis.call('ZADD', KEYS[1], finished_at, member)
  redis.call('ZADD', job_runs, finished_at, member)
  redis.call('ZADD', class_runs, finished_at, member)
  redis.call('SADD', KEYS[4], job_id)
  redis.call('HSET', KEYS[2], member, json)
end
return 0
