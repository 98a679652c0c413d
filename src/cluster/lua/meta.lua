-- Node leases, in the meta slot. A lease is a member `node#incarnation` of a sorted set
-- scored by its expiry on the store's clock. The epoch is a random value set by the first
-- node; a store that lost its data no longer holds it.
-- KEYS: 1 leases, 2 epoch, 3 incarnation counter
-- ARGV: 1 'register' | 'beat' | 'forget', 2 node or member, 3 lease_ms, 4 epoch
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
if op == 'register' then
  local inc = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2] .. '#' .. inc)
  redis.call('SET', KEYS[2], ARGV[4], 'NX')
  return {inc, redis.call('GET', KEYS[2]), now}
elseif op == 'beat' then
  if redis.call('GET', KEYS[2]) ~= ARGV[4] then
    return {'epoch'}
  end
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if not expiry or tonumber(expiry) < now then
    return {'fenced'}
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  local alive = redis.call('ZCOUNT', KEYS[1], now, '+inf')
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, 16)
  return {'ok', alive, expired, now}
else
  -- forget: the member was reaped in every shard; drop it unless it came back to life.
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if expiry and tonumber(expiry) < now then
    redis.call('ZREM', KEYS[1], ARGV[2])
  end
  return {'ok'}
end
