-- Every user of one shard with the shard's sequence number, read atomically, so a reader
-- that rebuilds from it continues with the log entries after that number.
-- KEYS: 1 shard user set, 2 shard sequence
-- ARGV: 1 user key prefix
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = uid
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. uid)
end
return out
