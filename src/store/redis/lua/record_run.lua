-- record_run: append a run record to the history and to its job's indexes.
-- KEYS: 1 runs (all), 2 runs of this job, 3 run records hash, 4 run sequence,
--       5 this job's runs of the record's class (runok: or runfail:), 6 run jobs set
-- ARGV: 1 finished_at (µs), 2 record JSON, 3 job id
-- Member: a 20-digit sequence number, ':', the job id. Scores order by finish time; on
-- a tie the sequence keeps insertion order, and the job id lets pruning find the
-- per-job indexes without reading the JSON.
local member = string.format('%020d', redis.call('INCR', KEYS[4])) .. ':' .. ARGV[3]
redis.call('ZADD', KEYS[1], ARGV[1], member)
redis.call('ZADD', KEYS[2], ARGV[1], member)
redis.call('ZADD', KEYS[5], ARGV[1], member)
redis.call('SADD', KEYS[6], ARGV[3])
redis.call('HSET', KEYS[3], member, ARGV[2])
return 0
