-- next_run_time: the earliest due time and the earliest lease expiry (an expiring
-- lease makes its job due again), read in one step.
-- KEYS: 1 due, 2 leases
-- Returns {due score or '', lease expiry score or ''}.
local due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local lease = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return { due[2] or '', lease[2] or '' }
