-- prune_runs: delete at most `batch` run records: first those beyond the newest
-- `max_rows`, then those that finished before the cutoff; oldest first.
-- KEYS: 1 runs (all), 2 run records hash
-- ARGV: 1 cutoff (µs) or '', 2 max_rows or '', 3 batch (> 0), 4 key prefix
-- Returns how many were deleted.
local batch = tonumber(ARGV[3])
local deleted = 0
local function drop(members)
  for _, member in ipairs(members) do
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
    -- The member is '<20 digits>:<job id>'.
    redis.call('ZREM', ARGV[4] .. 'runs:' .. string.sub(member, 22), member)
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
return deleted
