-- GCRA check-and-consume in one atomic step (see scalewise/guard/algorithms.py:gcra).
-- KEYS[1]  the caller's key
-- ARGV[1]  emission interval in seconds (period / limit)
-- ARGV[2]  tolerance in seconds (interval * burst)
-- ARGV[3]  cost (units this request consumes; 0 peeks)
-- Returns {allowed (1|0), tat - now in seconds as a string}; Python derives the rest.
--
-- Time is the Redis server's TIME, so the clocks of app instances do not matter: every
-- instance sharing this Redis sees one clock. Seconds are counted from 2023-11-14 so a
-- double keeps sub-microsecond precision. Redis 5+ replicates scripts by effects, so a
-- non-deterministic TIME before a write is allowed (redis.replicate_commands is a no-op
-- from Redis 7 and is called only where it exists).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + cost * interval
if now < new_tat - tolerance - 1e-7 then
  return {0, string.format('%.9f', tat - now)}
end
if cost > 0 then
  -- The key expires when the caller is back to a full burst: idle keys cost nothing.
  local ttl = math.ceil((new_tat - now) * 1000)
  if ttl > 0 then
    redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl)
  end
end
return {1, string.format('%.9f', new_tat - now)}
