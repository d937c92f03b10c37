-- Puts the freshly built sorted set in place of the live one, atomically: a reader
-- sees either the old set or the new one, never a missing or half-filled key.
--
-- KEYS[1]  the temporary key holding the new set (absent when the query was empty)
-- KEYS[2]  the live key
-- ARGV[1]  "1" when the new set has members, "0" when the counter is now empty
--
-- Returns how many members the live key had (0 when it was absent or not a sorted
-- set), read in the same atomic step, for the "removed" count.
local old = 0
if redis.call('TYPE', KEYS[2]).ok == 'zset' then
  old = redis.call('ZCARD', KEYS[2])
end
if ARGV[1] == '1' then
  redis.call('RENAME', KEYS[1], KEYS[2])
  -- The temporary key carries an expiry (so an abandoned one goes away); RENAME keeps
  -- it, and the live key must not expire.
  redis.call('PERSIST', KEYS[2])
else
  -- An empty result: zero counts are absent members, so the whole key goes.
  redis.call('DEL', KEYS[2], KEYS[1])
end
return old
