-- touch_progress.lua: keep the progress record of a job that is still active in the database alive.
--
-- KEYS[1]  the progress record (a hash)
-- ARGV[1]  the active TTL in ms
--
-- The TTL is only ever extended, never shortened (a terminal record keeps its longer TTL).
-- Returns 1 if the record exists (its TTL now at least ARGV[1]), 0 if there is no record.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
