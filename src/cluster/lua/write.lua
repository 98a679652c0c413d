-- One change of one user by one node incarnation.
-- KEYS: 1 user hash, 2 shard log, 3 shard sequence, 4 shard user set, 5 shard fence,
--       6 the incarnation's connections in this shard (connection id -> user id),
--       7 the shard's epoch
-- ARGV: 1 node, 2 incarnation, 3 log retention, 4 user id, 5 time of the change,
--       6 last_active or '', 7 connection opened or '', 8 connection closed or '',
--       9 '1' to write fields only if the user is new, 10 the epoch the node registered
--       under, then (name, value, '1' set | '0' remove)
local node, inc = ARGV[1], ARGV[2]
local refused = refusal(KEYS[7], ARGV[10], KEYS[5], node, inc)
if refused then
  return refused
end
local count = 'c:' .. node .. '#' .. inc
local existed = redis.call('EXISTS', KEYS[1]) == 1
if not existed then
  redis.call('HSET', KEYS[1], 'ca', ARGV[5])
  redis.call('SADD', KEYS[4], ARGV[4])
end
if ARGV[7] ~= '' and redis.call('HSET', KEYS[6], ARGV[7], ARGV[4]) == 1 then
  redis.call('HINCRBY', KEYS[1], count, 1)
end
if ARGV[8] ~= '' and redis.call('HDEL', KEYS[6], ARGV[8]) == 1 then
  if redis.call('HINCRBY', KEYS[1], count, -1) <= 0 then
    redis.call('HDEL', KEYS[1], count)
  end
end
if ARGV[6] ~= '' then
  raise_last_active(KEYS[1], ARGV[6])
end
local written = {}
if ARGV[9] ~= '1' or not existed then
  for i = 11, #ARGV, 3 do
    if ARGV[i + 2] == '1' then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      written[#written + 1] = '=' .. ARGV[i]
      written[#written + 1] = ARGV[i + 1]
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
      written[#written + 1] = '-' .. ARGV[i]
      written[#written + 1] = ''
    end
  end
end
return append(KEYS[1], KEYS[2], KEYS[3], ARGV[3], ARGV[4], written)
