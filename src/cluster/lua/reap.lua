-- Closes, in one shard, every connection of a dead node incarnation and ends its watches,
-- and fences that incarnation there, so its late writes are refused. Idempotent: a
-- second run finds nothing left to close.
-- KEYS: 1 shard log, 2 shard sequence, 3 shard fence, 4 the incarnation's connections,
--       5 the incarnation's watches
-- ARGV: 1 node, 2 incarnation, 3 log retention, 4 user key prefix, 5 time of the reap,
--       6 channel key prefix
local node, inc = ARGV[1], ARGV[2]
local fenced = redis.call('HGET', KEYS[3], node)
if not fenced or tonumber(fenced) < tonumber(inc) then
  redis.call('HSET', KEYS[3], node, inc)
end
local conns = redis.call('HGETALL', KEYS[4])
local by_user, order = {}, {}
for i = 1, #conns, 2 do
  local uid = conns[i + 1]
  if not by_user[uid] then
    by_user[uid] = {}
    order[#order + 1] = uid
  end
  table.insert(by_user[uid], conns[i])
end
-- In user id order, so every run (and the in-memory model) logs the same sequence.
table.sort(order)
local count_member = node .. '#' .. inc
local count = 'c:' .. count_member
local log = open_log(KEYS[1], KEYS[2], ARGV[3])
for _, uid in ipairs(order) do
  local user = load_hash(ARGV[4] .. uid)
  set_count(user, count, nil)
  local connected = false
  for name in pairs(user.f) do
    if string.sub(name, 1, 2) == 'c:' then
      connected = true
    end
  end
  -- The last connection anywhere went with the node: last seen now, if visible.
  if not connected and user.f.i ~= '1' then
    raise_last_active(user, ARGV[5])
  end
  local lost = encode({}, {'lost', node .. ' ' .. table.concat(by_user[uid], ',')})
  log_user(log, user, table.concat(encode({}, {'u', uid})), table.concat(lost))
  save(user)
end
redis.call('DEL', KEYS[4])
-- The watches, one entry per channel, in cid order.
local watches = redis.call('HGETALL', KEYS[5])
local by_channel, cids = {}, {}
for i = 1, #watches, 2 do
  local conn, cid = string.match(watches[i], '^(%d+):(.*)$')
  if not by_channel[cid] then
    by_channel[cid] = {}
    cids[#cids + 1] = cid
  end
  table.insert(by_channel[cid], conn)
end
table.sort(cids)
for _, cid in ipairs(cids) do
  local key = ARGV[6] .. cid
  local written = {'op', 'lost'}
  table.sort(by_channel[cid])
  for _, conn in ipairs(by_channel[cid]) do
    local field = 'w:' .. count_member .. ':' .. conn
    local uid = redis.call('HGET', key, field)
    if uid then
      redis.call('HDEL', key, field)
      written[#written + 1] = field
      written[#written + 1] = uid
    end
  end
  if #written > 2 then
    log_channel(log, cid, redis.call('HGET', key, 'ca') or '', written)
  end
end
redis.call('DEL', KEYS[5])
flush_users(log)
return #order
