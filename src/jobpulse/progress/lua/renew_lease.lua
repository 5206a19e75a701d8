-- renew_lease.lua: extend a worker's lease on a job if it still holds it, or take it back if the key
-- vanished (Redis restarted empty): a live worker must not look dead to the reaper.
--
-- KEYS[1]  the lease key
-- ARGV[1]  the holder's token
-- ARGV[2]  the new TTL in ms
--
-- Returns 1 if the lease was extended, 2 if it was taken back, 0 if another holder has it.

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
