-- GCRA (generic cell rate algorithm) in one round trip, on the Redis server's clock.
-- KEYS[1]: the limit's key.
-- ARGV[1]: emission interval, microseconds (one permit every ARGV[1]).
-- ARGV[2]: burst tolerance, microseconds: (burst - 1) * interval.
-- Returns {1, 0} when a permit is taken, {0, retry_after_us} when none is free.
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
