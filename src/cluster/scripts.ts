/**
 * The Lua scripts Redis runs for the cluster (sent with EVALSHA by ioredis'
 * defineCommand, which falls back to EVAL once after a NOSCRIPT). Each one is
 * atomic in Redis, so leases taken by several instances at once add up
 * exactly. Time always comes from redis.call('TIME'), never from a proxy's
 * clock: instances whose clocks disagree still agree on the window.
 *
 * Rate-limit keys: one hash per limit per client, `<prefix>rl:{<client>}:<limit>`.
 * The `{client}` hash tag keeps every key of a client in one Redis Cluster slot.
 *
 * Lease scripts: KEYS[1] the client's key; ARGV limit, windowMs, want, live,
 * burst. They grant min(want, what is left, max(1, floor(left / (2 x live))))
 * units: a hot client on one instance cannot take what the others will need,
 * and as the allowance runs out leases shrink to 1, i.e. exact per request.
 * Reply: { granted, period, retryMs (when granted is 0), redisNowMs }.
 *
 * Return scripts give unspent units back: ARGV count, period, windowMs, limit, burst.
 */

/** Shared prologue: Redis's clock in ms, and the lease bound. */
const PROLOGUE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local live = tonumber(ARGV[4])
local function bounded (left)
  if left <= 0 then return 0 end
  local b = math.floor(left / (2 * live))
  if b < 1 then b = 1 end
  local g = want
  if g > b then g = b end
  if g > left then g = left end
  return g
end
`

/** Fixed window: hash { w = window number, n = units granted in it }. */
export const FIXED_LEASE = PROLOGUE + `
local w = math.floor(now / win)
local v = redis.call('HMGET', KEYS[1], 'w', 'n')
local used = 0
if tonumber(v[1]) == w then used = tonumber(v[2]) or 0 end
local g = bounded(limit - used)
if g > 0 or tonumber(v[1]) ~= w then
  redis.call('HSET', KEYS[1], 'w', w, 'n', used + g)
  redis.call('PEXPIREAT', KEYS[1], (w + 1) * win + 1000)
end
local retry = 0
if g == 0 then retry = (w + 1) * win - now end
return { g, w, retry, now }
`

/**
 * Sliding window (the local limiter's two-window weighted count): hash
 * { w, cur = granted in window w, prev = granted in w - 1 }. A unit may be
 * granted while cur + 1 + prev * (1 - f) <= limit, f the fraction of w gone.
 */
export const SLIDING_LEASE = PROLOGUE + `
local w = math.floor(now / win)
local v = redis.call('HMGET', KEYS[1], 'w', 'cur', 'prev')
local sw = tonumber(v[1])
local cur, prev = 0, 0
if sw == w then cur = tonumber(v[2]) or 0; prev = tonumber(v[3]) or 0
elseif sw == w - 1 then prev = tonumber(v[2]) or 0 end
local f = (now - w * win) / win
local left = math.floor(limit - cur - prev * (1 - f) + 1e-9)
local g = bounded(left)
redis.call('HSET', KEYS[1], 'w', w, 'cur', cur + g, 'prev', prev)
redis.call('PEXPIREAT', KEYS[1], (w + 2) * win + 1000)
local retry = 0
if g == 0 then
  if cur + 1 > limit then
    -- next window: prev' = cur; allowed once cur * (1 - f') <= limit - 1
    local f2 = 1 - (limit - 1) / cur
    if f2 < 0 then f2 = 0 end
    retry = (w + 1) * win - now + math.ceil(f2 * win)
  else
    local f2 = 1 - (limit - cur - 1) / prev
    retry = math.ceil(w * win + f2 * win - now)
  end
  if retry < 1 then retry = 1 end
end
return { g, w, retry, now }
`

/**
 * Token bucket in the GCRA form (as the local limiter): hash { tat }, the
 * theoretical arrival time in ms. T = windowMs / limit, tau = (burst - 1) T;
 * the bucket holds floor((tau + T - (tat - now)) / T) tokens. The lease's
 * period (for the shared-memory tag) is floor(now / windowMs).
 */
export const TOKEN_LEASE = PROLOGUE + `
local burst = tonumber(ARGV[5])
local T = win / limit
local tau = (burst - 1) * T
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or now
if tat < now then tat = now end
local left = math.floor((tau + T - (tat - now)) / T + 1e-9)
local g = bounded(left)
local retry = 0
if g > 0 then
  tat = tat + g * T
  redis.call('HSET', KEYS[1], 'tat', tostring(tat))
  redis.call('PEXPIRE', KEYS[1], math.ceil(tat - now) + 1000)
else
  retry = math.ceil(tat - tau - now)
  if retry < 1 then retry = 1 end
end
return { g, math.floor(now / win), retry, now }
`

/** Give `count` fixed-window units of `period` back (nothing once the window is over). */
export const FIXED_RETURN = `
local v = redis.call('HMGET', KEYS[1], 'w', 'n')
if tonumber(v[1]) ~= tonumber(ARGV[2]) then return 0 end
local n = (tonumber(v[2]) or 0) - tonumber(ARGV[1])
if n < 0 then n = 0 end
redis.call('HSET', KEYS[1], 'n', n)
return 1
`

/** Sliding window: back into `cur` of its window, or `prev` once the next one began. */
export const SLIDING_RETURN = `
local v = redis.call('HMGET', KEYS[1], 'w', 'cur', 'prev')
local sw = tonumber(v[1])
local p = tonumber(ARGV[2])
local field
if sw == p then field = 'cur' elseif sw == p + 1 then field = 'prev' else return 0 end
local i = 2
if field == 'prev' then i = 3 end
local n = (tonumber(v[i]) or 0) - tonumber(ARGV[1])
if n < 0 then n = 0 end
redis.call('HSET', KEYS[1], field, n)
return 1
`

/** Token bucket: tokens back into the bucket (TAT moves back, never before now). */
export const TOKEN_RETURN = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat'))
if tat == nil then return 0 end
tat = tat - tonumber(ARGV[1]) * tonumber(ARGV[3]) / tonumber(ARGV[4])
if tat <= now then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[1], 'tat', tostring(tat))
return 1
`

/**
 * Membership, drains and shared health in one round trip per heartbeat.
 * KEYS: members, admin, health (one hash tag, one Cluster slot).
 * ARGV: instanceId, this instance's JSON, ms after which an entry is dropped.
 * Members map id -> "<last seen ms>|<json>". Reply: { now, members (flat
 * id, value pairs), admin (address, state pairs), health (address, json pairs) }.
 */
export const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now .. '|' .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local live = {}
local stale = tonumber(ARGV[3])
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], '|', 1, true)
  local seen = tonumber(string.sub(all[i + 1], 1, sep - 1))
  if now - seen > stale then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return { now, live, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]) }
`
