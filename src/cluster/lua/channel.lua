-- One change of one channel, part of the write script (see `write.lua` for `shard`).
-- a: 1 cid, 2 time of the change, 3 op, then by op:
--    up: 4 '1' to write only if the channel is new, 5 k, k (name, value, '1' set |
--        '0' remove) triples, then member ids to add
--    rm: member ids to remove;  ws, we: 4 connection, 5 user id;  del: nothing
-- The channel hash holds `ca`, `ua`, `lm`, `f:<name>`, `m:<user>` and
-- `w:<node#incarnation>:<connection>` -> user id. A change that changes nothing logs
-- nothing.
local function channel_change(shard, a)
  local cid, op = a[1], a[3]
  local key = shard.channel_prefix .. cid
  local existed = redis.call('EXISTS', key) == 1
  local function create()
    redis.call('HSET', key, 'ca', a[2], 'ua', a[2])
    redis.call('SADD', shard.channels, cid)
  end
  local written = {'op', op}
  local function add(name, value)
    written[#written + 1] = name
    written[#written + 1] = value
  end
  if op == 'up' then
    if existed and a[4] == '1' then
      return
    end
    if not existed then
      create()
    end
    local k = tonumber(a[5])
    for i = 6, 5 + 3 * k, 3 do
      if a[i + 2] == '1' then
        redis.call('HSET', key, a[i], a[i + 1])
        add('=' .. a[i], a[i + 1])
      else
        redis.call('HDEL', key, a[i])
        add('-' .. a[i], '')
      end
    end
    for i = 6 + 3 * k, #a do
      if redis.call('HSET', key, 'm:' .. a[i], '1') == 1 then
        add('+m:' .. a[i], '')
      end
    end
  elseif op == 'ws' then
    -- A watch of a channel deleted meanwhile creates it: the connection still watches.
    if not existed then
      create()
    end
    local field = 'w:' .. shard.me .. ':' .. a[4]
    if redis.call('HSET', key, field, a[5]) == 0 then
      return
    end
    redis.call('HSET', shard.watches, a[4] .. ':' .. cid, '1')
    add(field, a[5])
  elseif not existed then
    return
  elseif op == 'we' then
    local field = 'w:' .. shard.me .. ':' .. a[4]
    local uid = redis.call('HGET', key, field)
    if not uid then
      return
    end
    redis.call('HDEL', key, field)
    redis.call('HDEL', shard.watches, a[4] .. ':' .. cid)
    add(field, uid)
  elseif op == 'rm' then
    for i = 4, #a do
      if redis.call('HDEL', key, 'm:' .. a[i]) == 1 then
        add('-m:' .. a[i], '')
      end
    end
  else
    -- del: the watchers go with the channel, also from their incarnations' watch lists.
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local member, conn = split_watcher(all[i])
      if member then
        redis.call('HDEL', shard.watches_prefix .. member, conn .. ':' .. cid)
        add(all[i], all[i + 1])
      end
    end
    local ca = redis.call('HGET', key, 'ca') or ''
    redis.call('DEL', key)
    redis.call('SREM', shard.channels, cid)
    log_channel(shard.log, cid, ca, written)
    return
  end
  log_channel(shard.log, cid, redis.call('HGET', key, 'ca') or '', written)
end
