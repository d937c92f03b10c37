-- runs: the newest `limit` run records of one index (all runs, or one job's).
-- KEYS: 1 the index, 2 run records hash
-- ARGV: 1 limit (> 0)
local members = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, member in ipairs(members) do
  local json = redis.call('HGET', KEYS[2], member)
  if json then
    out[#out + 1] = json
  end
end
return out
