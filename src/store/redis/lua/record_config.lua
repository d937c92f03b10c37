-- record_config: record the next applied config, if it is the next generation (the
-- compare-and-set that orders a cluster's configs; generations have no gaps, so the
-- hash's length is the newest one).
-- KEYS: 1 configs
-- ARGV: 1 the generation, 2 its ConfigGeneration JSON
-- Returns 1, or 0 if the generation is not the one after the newest recorded.
if redis.call('HLEN', KEYS[1]) + 1 ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
