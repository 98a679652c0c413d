-- Every user and every channel of one shard with the shard's sequence number, read
-- atomically, so a reader that rebuilds from it continues with the log entries after
-- that number. Answers {n, {user, hash, ...}, {cid, hash, ...}}.
-- KEYS: 1 shard user set, 2 shard sequence, 3 shard channel set
-- ARGV: 1 user key prefix, 2 channel key prefix
local users, channels = {}, {}
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  users[#users + 1] = uid
  users[#users + 1] = redis.call('HGETALL', ARGV[1] .. uid)
end
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  channels[#channels + 1] = cid
  channels[#channels + 1] = redis.call('HGETALL', ARGV[2] .. cid)
end
return {redis.call('GET', KEYS[2]) or '0', users, channels}
