-- finish_runs: free the instance slots of finished runs and record them, in one round
-- trip and all at once (a script runs atomically).
-- KEYS: 1 runs (all), 2 run records hash, 3 run sequence, 4 run jobs set, then per
--       run: the runs of its job, its job's instance set, its job's runs of the
--       record's class (runok: or runfail:)
-- ARGV: 1 owner .. "\31", then per run: finished_at (µs), record JSON, job id,
--       1 if it frees a slot else 0, its scheduled time (µs)
-- Slots and members as in release_instance.lua and record_run.lua. A run frees the
-- owner's slot whose run times end at its scheduled time (its own), else the owner's
-- oldest without run times, else its oldest (store::slot_to_free).
local mine = ARGV[1]
local count = (#KEYS - 4) / 3
for index = 1, count do
  local job_runs = KEYS[2 + 3 * index]
  local instances = KEYS[3 + 3 * index]
  local class_runs = KEYS[4 + 3 * index]
  local finished_at = ARGV[5 * index - 3]
  local json = ARGV[5 * index - 2]
  local job_id = ARGV[5 * index - 1]
  if ARGV[5 * index] == '1' then
    local scheduled = ARGV[5 * index + 1]
    local own, plain, any
    for _, member in ipairs(redis.call('ZRANGE', instances, 0, -1)) do
      if string.sub(member, 1, #mine) == mine then
        local times = string.match(string.sub(member, #mine + 1), '^[^\31]*\31(.*)$')
        if times == nil or times == '' then
          plain = plain or member
        else
          local last = string.match(times, '([^,]*)$')
          if last == scheduled then
            own = own or member
          end
        end
        any = any or member
      end
    end
    local free = own or plain or any
    if free then
      redis.call('ZREM', instances, free)
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
