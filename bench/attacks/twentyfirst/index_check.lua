-- Read-only consistency check of the open-room index, atomic (EVAL index_check.lua 0 prefix type).
-- Returns {counts..., then id, score, entries triples of open:<type>}.
local p, t = ARGV[1], ARGV[2]
local function eset(d) return p .. 'open-entry:' .. d .. ':' .. t end
local c = {open = 0, open_lapsed = 0, pair_missing = 0, pair_score_diff = 0, sets = 0, set_ids = 0,
  stale_lapsed = 0, stale_digest = 0, stale_not_open = 0, stale_score = 0, registry = 0, registry_empty = 0, sets_unregistered = 0}
local opens = redis.call('ZRANGE', p .. 'open:' .. t, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #opens, 2 do
  local id, sc = opens[i], tonumber(opens[i + 1]); c.open = c.open + 1
  local e = redis.call('HGET', p .. 'room:' .. id, 'entries')
  if not e then c.open_lapsed = c.open_lapsed + 1; e = '' end
  for d in string.gmatch(e, '%S+') do
    local z = redis.call('ZSCORE', eset(d), id)
    if not z then c.pair_missing = c.pair_missing + 1 elseif tonumber(z) ~= sc then c.pair_score_diff = c.pair_score_diff + 1 end
  end
  table.insert(out, id); table.insert(out, opens[i + 1]); table.insert(out, e)
end
local reg = redis.call('SMEMBERS', p .. 'open-entries:' .. t)
local inreg = {}
for _, d in ipairs(reg) do
  c.registry = c.registry + 1; inreg[d] = true
  local ids = redis.call('ZRANGE', eset(d), 0, -1, 'WITHSCORES')
  if #ids == 0 then c.registry_empty = c.registry_empty + 1 else c.sets = c.sets + 1 end
  for i = 1, #ids, 2 do
    local id, sc = ids[i], tonumber(ids[i + 1]); c.set_ids = c.set_ids + 1
    local e = redis.call('HGET', p .. 'room:' .. id, 'entries')
    if not e then c.stale_lapsed = c.stale_lapsed + 1
    elseif not string.find(' ' .. e .. ' ', ' ' .. d .. ' ', 1, true) then c.stale_digest = c.stale_digest + 1
    else
      local o = redis.call('ZSCORE', p .. 'open:' .. t, id)
      if not o then c.stale_not_open = c.stale_not_open + 1 elseif tonumber(o) ~= sc then c.stale_score = c.stale_score + 1 end
    end
  end
end
for _, k in ipairs(redis.call('KEYS', p .. 'open-entry:*:' .. t)) do
  local d = string.sub(k, #p + 12, #k - #t - 1)
  if not inreg[d] then c.sets_unregistered = c.sets_unregistered + 1 end
end
local head = {}
for _, k in ipairs({'open', 'open_lapsed', 'pair_missing', 'pair_score_diff', 'sets', 'set_ids', 'stale_lapsed', 'stale_digest', 'stale_not_open', 'stale_score', 'registry', 'registry_empty', 'sets_unregistered'}) do
  table.insert(head, k .. '=' .. c[k])
end
return {table.concat(head, ' '), out}
