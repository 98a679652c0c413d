-- The scripts the cluster link runs in the shared store. Each runs atomically and touches
-- the keys of one hash-tag slot: a shard's (`{s<k>}`) or the meta slot (`{m}`). The Rust
-- side prepends this common part to each shard script.

-- Records a change of one user: bumps the user's version, then appends an entry to the
-- shard's log carrying the version, created_at, last_active, the connection count of
-- every node incarnation, and the fields the change wrote. Entry ids are `0-<n>` with n
-- the shard's sequence number, so a reader notices a gap (a trimmed or lost entry) by
-- its numbers alone. Answers {n, version}.
local function append(user_key, log, seq, retention, uid, written)
  local version = redis.call('HINCRBY', user_key, 'v', 1)
  local counts, ca, la = {}, '', ''
  local all = redis.call('HGETALL', user_key)
  for i = 1, #all, 2 do
    local k = all[i]
    if string.sub(k, 1, 2) == 'c:' then
      counts[#counts + 1] = string.sub(k, 3) .. '=' .. all[i + 1]
    elseif k == 'ca' then
      ca = all[i + 1]
    elseif k == 'la' then
      la = all[i + 1]
    end
  end
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', retention, '0-' .. n,
    'u', uid, 'v', version, 'ca', ca, 'la', la, 'c', table.concat(counts, ','), unpack(written))
  return {n, version}
end

local function raise_last_active(user_key, at)
  local la = redis.call('HGET', user_key, 'la')
  if not la or tonumber(la) < tonumber(at) then
    redis.call('HSET', user_key, 'la', at)
  end
end

-- Records a change of one channel: appends an entry to the shard's log naming the channel
-- (`ch`), its created_at and what the change did (`op` and its fields). Answers {n}.
local function log_channel(log, seq, retention, cid, ca, written)
  local n = redis.call('INCR', seq)
  redis.call('XADD', log, 'MAXLEN', '~', retention, '0-' .. n, 'ch', cid, 'ca', ca, unpack(written))
  return {n}
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
