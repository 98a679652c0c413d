-- Changes of users and channels of one shard by one node incarnation, in order, each
-- logged as the store applied it. The batch shares one epoch and fence check, one read
-- and store of the shard's sequence number, one log entry for each run of user changes,
-- and one read and one store of each user hash it touches.
-- KEYS: 1 shard log, 2 shard sequence, 3 shard user set, 4 shard channel set, 5 shard fence,
--       6 the shard's epoch, 7 the incarnation's connections in this shard
--       (connection id -> user id), 8 the incarnation's watches in this shard
--       (`<connection>:<cid>` -> '1')
-- ARGV: 1 node, 2 incarnation, 3 log retention, 4 the epoch the node registered under,
--       5 user key prefix, 6 channel key prefix, 7 prefix of watch lists (a member
--       follows), then per change: 'u' (user) or 'c' (channel), the number of its
--       arguments, its arguments (see `user_change` and `channel.lua`).
-- Answers {'ok'}, or {'epoch'} or {'fenced'} when the whole batch is refused.
local node, inc = ARGV[1], ARGV[2]
local refused = refusal(KEYS[6], ARGV[4], KEYS[5], node, inc)
if refused then
  return refused
end
local shard = {
  log = open_log(KEYS[1], KEYS[2], ARGV[3]),
  me = node .. '#' .. inc,
  channels = KEYS[4],
  watches = KEYS[8],
  channel_prefix = ARGV[6],
  watches_prefix = ARGV[7],
}
local count = 'c:' .. shard.me
local users, loaded = {}, {}

local function user_hash(uid)
  local user = users[uid]
  if not user then
    user = load_hash(ARGV[5] .. uid)
    users[uid] = user
    loaded[#loaded + 1] = user
  end
  return user
end

-- One change of one user, its arguments at ARGV[o + 1] to ARGV[last]: 1 user id, 2 time
-- of the change, 3 last_active or '', 4 connection opened or '', 5 connection closed or
-- '', 6 '1' to write fields only if the user is new, 7 `u` and the user id and 8 the
-- fields as the log names them (`=<name>`, value or `-<name>`, ''), both encoded as in
-- the log, then (name, value, '1' set | '0' remove) triples.
local function user_change(o, last)
  local uid = ARGV[o + 1]
  local user = user_hash(uid)
  local existed = next(user.f) ~= nil
  if not existed then
    set(user, 'ca', ARGV[o + 2])
    redis.call('SADD', KEYS[3], uid)
  end
  -- The connection list decides whether the count moves, so announcing twice is harmless.
  local opened, closed = ARGV[o + 4], ARGV[o + 5]
  if opened ~= '' and redis.call('HSET', KEYS[7], opened, uid) == 1 then
    set_count(user, count, tostring((tonumber(user.f[count]) or 0) + 1))
  end
  if closed ~= '' and redis.call('HDEL', KEYS[7], closed) == 1 then
    local n = (tonumber(user.f[count]) or 0) - 1
    set_count(user, count, n > 0 and tostring(n) or nil)
  end
  if ARGV[o + 3] ~= '' then
    raise_last_active(user, ARGV[o + 3])
  end
  local written = ''
  if ARGV[o + 6] ~= '1' or not existed then
    written = ARGV[o + 8]
    for i = o + 9, last, 3 do
      set(user, ARGV[i], ARGV[i + 2] == '1' and ARGV[i + 1] or nil)
    end
  end
  log_user(shard.log, user, ARGV[o + 7], written)
end

local i, last = 8, #ARGV
while i <= last do
  local kind, n = ARGV[i], tonumber(ARGV[i + 1])
  if kind == 'u' then
    user_change(i + 1, i + 1 + n)
  else
    channel_change(shard, {unpack(ARGV, i + 2, i + 1 + n)})
  end
  i = i + 2 + n
end
for _, user in ipairs(loaded) do
  save(user)
end
flush_users(shard.log)
return {'ok'}
