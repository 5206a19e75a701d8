-- rate_limit.lua: count one submission of an owner in a fixed window, unless the window is full.
--
-- KEYS[1]  the owner's counter (Keyspace.rate); its TTL is what is left of the window
-- ARGV[1]  the most submissions one window allows
-- ARGV[2]  the window's length in ms
--
-- Returns {1, ms left in the window} when the submission is counted, or {0, ms left in the window} when
-- the window is full (a refused submission is not counted, so it does not lengthen the wait).

local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if count > 0 and left < 0 then
  count = 0 -- a counter without a TTL would never reset: start a new window
end
if count >= tonumber(ARGV[1]) then
  return {0, left}
end
if count == 0 then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[2])
  return {1, tonumber(ARGV[2])}
end
redis.call('INCR', KEYS[1])
return {1, left}
