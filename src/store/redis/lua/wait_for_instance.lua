-- wait_for_instance: make an owner the job's one waiter (the node where a run of it
-- waits for an instance slot), or move the end of its own waiter; refused while another
-- owner's waiter stands. The waiter ends by Redis's expiry, which measures the real
-- time it is meant to (how long a waiter nobody refreshes keeps its slot).
-- KEYS: 1 the job's waiter (wait:ID), 2 the ids of the jobs with a waiter
-- ARGV: 1 owner, 2 time-to-live (ms), 3 job id
-- Returns 1 (the owner is the waiter) or 0 (another owner's waiter stands).
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
