-- The scripts the cluster link runs in the shared store. Each runs atomically and touches
-- the keys of one hash-tag slot: a shard's (`{s<k>}`) or the meta slot (`{m}`). The Rust
-- side prepends this common part to each shard script.

-- A shard's log. Entry ids are `0-<n>` with n the shard's sequence number, so a reader
-- notices a gap (a trimmed or lost entry) by its numbers alone. A script reads the number
-- once and stores each new one before appending its entry, so a failed append leaves a
-- gap (readers rebuild) rather than a number the log has already used. User changes
-- logged one after another share one entry until `flush_users` or a channel entry.
-- Each user change starts with its `u` field; a channel change has an entry of its own.
-- An entry is one stream field `e` whose value holds the entry's names and values,
-- each as `<length>:<bytes>`, so a reader takes an entry as one piece of its reply.
local function open_log(log, seq, retention)
  local n = tonumber(redis.call('GET', seq) or '0')
  return {key = log, seq = seq, retention = retention, n = n, users = {}}
end

-- `<length>:` prefixes by length, made once per script: formatting a Lua number (a
-- double) costs more than the rest of an element's encoding.
local prefixes = {}

-- Appends the encoding of `values` to `parts`.
local function encode(parts, values)
  local k = #parts
  for _, v in ipairs(values) do
    local n = #v
    local prefix = prefixes[n]
    if not prefix then
      prefix = n .. ':'
      prefixes[n] = prefix
    end
    parts[k + 1] = prefix
    parts[k + 2] = v
    k = k + 2
  end
  return parts
end

local function append_entry(log, parts)
  log.n = log.n + 1
  redis.call('SET', log.seq, log.n)
  redis.call('XADD', log.key, 'MAXLEN', '~', log.retention, '0-' .. log.n, 'e', table.concat(parts))
end

local function flush_users(log)
  if #log.users > 0 then
    append_entry(log, log.users)
    log.users = {}
  end
end


-- A hash read once into a table, changed in Lua and written back with one HSET and at
-- most one HDEL (`save`), so a change costs a few commands however many fields it moves.
local function load_hash(key)
  local all = redis.call('HGETALL', key)
  local f = {}
  for i = 1, #all, 2 do
    f[all[i]] = all[i + 1]
  end
  return {key = key, f = f, dirty = {}, order = {}}
end

-- Sets a field of a loaded hash (nil removes it).
local function set(hash, name, value)
  hash.f[name] = value
  if not hash.dirty[name] then
    hash.dirty[name] = true
    hash.order[#hash.order + 1] = name
  end
end

-- Sets a connection count (`c:<node#incarnation>`) of a loaded user hash.
local function set_count(user, name, value)
  set(user, name, value)
  user.counts = nil
end

local function save(hash)
  local sets, dels = {}, {}
  for _, name in ipairs(hash.order) do
    local value = hash.f[name]
    if value then
      sets[#sets + 1] = name
      sets[#sets + 1] = value
    else
      dels[#dels + 1] = name
    end
  end
  if #sets > 0 then
    redis.call('HSET', hash.key, unpack(sets))
  end
  if #dels > 0 then
    redis.call('HDEL', hash.key, unpack(dels))
  end
  hash.dirty, hash.order = {}, {}
end

-- Records a change of one user (a loaded hash, stored by the caller): bumps its version
-- and logs the user id, the version, created_at, last_active, the connection count of
-- every node incarnation (in incarnation order) and the fields the change wrote. `head`
-- and `written` come encoded: `u` and the user id, and the written names and values.
local function log_user(log, user, head, written)
  local f = user.f
  set(user, 'v', tostring((tonumber(f.v) or 0) + 1))
  -- Kept while the counts stay as they are (`set_count` drops it).
  if not user.counts then
    local members = {}
    for name in pairs(f) do
      -- `c:`, without making a string of each name.
      if string.byte(name, 1) == 99 and string.byte(name, 2) == 58 then
        members[#members + 1] = string.sub(name, 3)
      end
    end
    table.sort(members)
    local counts = {}
    for i, m in ipairs(members) do
      counts[i] = m .. '=' .. f['c:' .. m]
    end
    user.counts = table.concat(counts, ',')
  end
  local parts = log.users
  parts[#parts + 1] = head
  encode(parts, {'v', f.v, 'ca', f.ca or '', 'la', f.la or '', 'c', user.counts})
  parts[#parts + 1] = written
end

local function raise_last_active(user, at)
  local la = user.f.la
  if not la or tonumber(la) < tonumber(at) then
    set(user, 'la', at)
  end
end

-- Records a change of one channel: appends an entry naming the channel (`ch`), its
-- created_at and what the change did (`op` and its fields).
local function log_channel(log, cid, ca, written)
  flush_users(log)
  append_entry(log, encode(encode({}, {'ch', cid, 'ca', ca}), written))
end

-- Splits a watcher field `w:<member>:<connection>` into member and connection.
local function split_watcher(field)
  return string.match(field, '^w:(.*):(%d+)$')
end

-- Refuses a write of an incarnation of a store that lost its data (or a node that has not
-- noticed yet: it must register anew first) and of a fenced incarnation. Answers the
-- refusal, or nil.
local function refusal(epoch_key, epoch, fence_key, node, inc)
  if redis.call('GET', epoch_key) ~= epoch then
    return {'epoch'}
  end
  local fenced = redis.call('HGET', fence_key, node)
  if fenced and tonumber(fenced) >= tonumber(inc) then
    return {'fenced'}
  end
  return nil
end
