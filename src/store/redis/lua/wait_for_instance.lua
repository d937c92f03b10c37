-- wait_for_instance: make an owner the job's one waiter (the node where a run of it
-- waits for an instance slot, and the limit that run claims under), or move the end of
-- its own waiter; refused while another owner's waiter stands. The waiter ends by
-- Redis's expiry, which measures the real time it is meant to (how long a waiter
-- nobody refreshes keeps its slot).
-- KEYS: 1 the job's waiter (wait:ID, a hash: owner, max), 2 the ids of the jobs with a
--       waiter
-- ARGV: 1 owner, 2 time-to-live (ms), 3 job id, 4 max_instances
-- Returns 1 (the owner is the waiter) or 0 (another owner's waiter stands).
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'max', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
