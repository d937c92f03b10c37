-- count_states: how many jobs are pending (with a next run time), paused and set aside
-- (neither), for GET /metrics. Jobs with a next run time are counted by HLEN alone;
-- only when some job has none does the script look at which (the paused flag of the
-- job's JSON), on the server, so no job crosses the network.
-- KEYS: 1 jobs, 2 next
-- Returns {pending, paused, set aside}.
local total = redis.call('HLEN', KEYS[1])
local pending = redis.call('HLEN', KEYS[2])
local paused = 0
local aside = 0
if total > pending then
  for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
    if redis.call('HEXISTS', KEYS[2], id) == 0 then
      local ok, job = pcall(cjson.decode, redis.call('HGET', KEYS[1], id))
      if ok and type(job) == 'table' and job.paused == true then
        paused = paused + 1
      else
        aside = aside + 1
      end
    end
  end
end
return { pending, paused, aside }
