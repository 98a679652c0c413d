-- One change of one channel by one node incarnation.
-- KEYS: 1 channel hash, 2 shard log, 3 shard sequence, 4 shard channel set, 5 shard fence,
--       6 the shard's epoch, 7 the incarnation's watches in this shard
--       (`<connection>:<cid>` -> '1')
-- ARGV: 1 node, 2 incarnation, 3 log retention, 4 cid, 5 time of the change, 6 op,
--       7 the epoch the node registered under, 8 prefix of watch lists (a member follows),
--       then by op:
--       up: 9 '1' to write only if the channel is new, 10 k, k (name, value, '1' set |
--           '0' remove) triples, then member ids to add
--       rm: member ids to remove;  ws, we: 9 connection, 10 user id;  del: nothing
-- The channel hash holds `ca`, `ua`, `lm`, `f:<name>`, `m:<user>` and
-- `w:<node#incarnation>:<connection>` -> user id. Answers {n} for a logged change,
-- {'skip'} for a change that changed nothing, {'epoch'} or {'fenced'} when refused.
local node, inc, cid, op = ARGV[1], ARGV[2], ARGV[4], ARGV[6]
local refused = refusal(KEYS[6], ARGV[7], KEYS[5], node, inc)
if refused then
  return refused
end
local me = node .. '#' .. inc
local existed = redis.call('EXISTS', KEYS[1]) == 1
local function create()
  redis.call('HSET', KEYS[1], 'ca', ARGV[5], 'ua', ARGV[5])
  redis.call('SADD', KEYS[4], cid)
end
local written = {'op', op}
local function add(name, value)
  written[#written + 1] = name
  written[#written + 1] = value
end
if op == 'up' then
  if existed and ARGV[9] == '1' then
    return {'skip'}
  end
  if not existed then
    create()
  end
  local k = tonumber(ARGV[10])
  for i = 11, 10 + 3 * k, 3 do
    if ARGV[i + 2] == '1' then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      add('=' .. ARGV[i], ARGV[i + 1])
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
      add('-' .. ARGV[i], '')
    end
  end
  for i = 11 + 3 * k, #ARGV do
    if redis.call('HSET', KEYS[1], 'm:' .. ARGV[i], '1') == 1 then
      add('+m:' .. ARGV[i], '')
    end
  end
elseif op == 'ws' then
  -- A watch of a channel deleted meanwhile creates it: the connection still watches.
  if not existed then
    create()
  end
  local field = 'w:' .. me .. ':' .. ARGV[9]
  if redis.call('HSET', KEYS[1], field, ARGV[10]) == 0 then
    return {'skip'}
  end
  redis.call('HSET', KEYS[7], ARGV[9] .. ':' .. cid, '1')
  add(field, ARGV[10])
elseif not existed then
  return {'skip'}
elseif op == 'we' then
  local field = 'w:' .. me .. ':' .. ARGV[9]
  local uid = redis.call('HGET', KEYS[1], field)
  if not uid then
    return {'skip'}
  end
  redis.call('HDEL', KEYS[1], field)
  redis.call('HDEL', KEYS[7], ARGV[9] .. ':' .. cid)
  add(field, uid)
elseif op == 'rm' then
  for i = 9, #ARGV do
    if redis.call('HDEL', KEYS[1], 'm:' .. ARGV[i]) == 1 then
      add('-m:' .. ARGV[i], '')
    end
  end
else
  -- del: the watchers go with the channel, also from their incarnations' watch lists.
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local member, conn = split_watcher(all[i])
    if member then
      redis.call('HDEL', ARGV[8] .. member, conn .. ':' .. cid)
      add(all[i], all[i + 1])
    end
  end
  local ca = redis.call('HGET', KEYS[1], 'ca') or ''
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[4], cid)
  return log_channel(KEYS[2], KEYS[3], ARGV[3], cid, ca, written)
end
return log_channel(KEYS[2], KEYS[3], ARGV[3], cid, redis.call('HGET', KEYS[1], 'ca') or '', written)
