/**
 * Rate limiting over the shared table, single thread, injected clock:
 * exact counts per algorithm, window rollover, sliding weighting, token
 * refill, address spellings, the full-table policy, the 429 headers, and
 * client-address resolution. (Cross-thread exactness: ratelimit-threads.test.ts.)
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { SharedState } from '../../src/shared/state'
import * as L from '../../src/shared/layout'
import type { RateLimitConfig } from '../../src/config/types'
import { SwitchyardError } from '../../src/errors'
import { createRateLimiter, createClientIpResolver, RateDecision, rateLimitHeaders, type RateLimiter } from '../../src/ratelimit'
import { hashAddress } from '../../src/ratelimit/hash'
import { policyLine } from '../../src/ratelimit/headers'
import { keySeed } from '../../src/ratelimit/table'

interface Rig {
  config: RateLimitConfig
  state: SharedState
  limiter: RateLimiter
  decision: RateDecision
  /** Check `times` requests from `ip` at `nowMs`; how many were allowed. */
  allowed (ip: string, nowMs: number, times?: number): number
}

function rig (overrides: Partial<RateLimitConfig>): Rig {
  const config: RateLimitConfig = { algorithm: 'fixed-window', maxRequests: 5, windowMs: 60_000, tableSize: 64, trustProxy: [], ...overrides }
  const state = SharedState.create(config.tableSize)
  const limiter = createRateLimiter(config, state)
  const decision = limiter.newDecision()
  return {
    config,
    state,
    limiter,
    decision,
    allowed (ip, nowMs, times = 1) {
      let n = 0
      for (let i = 0; i < times; i++) if (limiter.check(ip, nowMs, decision)) n++
      return n
    },
  }
}

const MINUTE = 60_000
/** A realistic Date.now() value, so window numbers and time units are large. */
const EPOCH = 1_760_000_000_000

describe('fixed window', () => {
  it('allows exactly maxRequests per window and reports remaining, reset and retry', () => {
    const r = rig({ maxRequests: 5 })
    const t = 2 * MINUTE + 1000 // window 2, 59 s before its end
    const remaining: number[] = []
    for (let i = 0; i < 5; i++) {
      assert.equal(r.limiter.check('192.0.2.1', t, r.decision), true)
      assert.equal(r.decision.allowed, true)
      assert.equal(r.decision.limit, 5)
      assert.equal(r.decision.resetSeconds, 59)
      assert.equal(r.decision.retryAfterSeconds, 0)
      remaining.push(r.decision.remaining)
    }
    assert.deepEqual(remaining, [4, 3, 2, 1, 0])
    for (let i = 0; i < 3; i++) {
      assert.equal(r.limiter.check('192.0.2.1', t + 500, r.decision), false)
      assert.equal(r.decision.allowed, false)
      assert.equal(r.decision.remaining, 0)
      assert.equal(r.decision.retryAfterSeconds, 59)
    }
  })

  it('rolls over exactly at the window boundary', () => {
    const r = rig({ maxRequests: 3, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', 5000, 10), 3)
    assert.equal(r.allowed('192.0.2.1', 5999, 10), 0)
    assert.equal(r.allowed('192.0.2.1', 6000, 10), 3)
    assert.equal(r.decision.retryAfterSeconds, 1)
    assert.equal(r.allowed('192.0.2.1', 6999, 1), 0)
    assert.equal(r.allowed('192.0.2.1', 7000, 1), 1)
  })

  it('counts with a Date.now()-sized clock and after a long idle', () => {
    const r = rig({ maxRequests: 2, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', EPOCH, 5), 2)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 999, 5), 0)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 1000, 5), 2)
    // 10 days later (864 000 windows): a fresh window, whatever the tags did meanwhile
    assert.equal(r.allowed('192.0.2.1', EPOCH + 10 * 86_400_000, 5), 2)
  })

  it('a thread whose clock is a little behind counts into the newer window instead of resetting it', () => {
    const r = rig({ maxRequests: 2, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', 3000, 2), 2)
    assert.equal(r.allowed('192.0.2.1', 2999, 3), 0) // window 2 by its clock, but the slot is in window 3
    assert.equal(r.allowed('192.0.2.1', 3000, 1), 0)
  })

  it('keeps addresses apart', () => {
    const r = rig({ maxRequests: 1 })
    assert.equal(r.allowed('192.0.2.1', 0, 3), 1)
    assert.equal(r.allowed('192.0.2.2', 0, 3), 1)
    assert.equal(r.allowed('2001:db8::1', 0, 3), 1)
    assert.equal(r.allowed('2001:db8::2', 0, 3), 1)
    assert.equal(r.allowed('2001:db8::1:0', 0, 3), 1)
    assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 5)
  })

  it('charges an IPv4 client the same as its IPv4-mapped IPv6 spelling, and IPv6 case-insensitively', () => {
    const r = rig({ maxRequests: 5 })
    assert.equal(r.allowed('203.0.113.7', 0, 3), 3)
    assert.equal(r.allowed('::ffff:203.0.113.7', 0, 3), 2)
    assert.equal(r.allowed('::FFFF:203.0.113.7', 0, 1), 0)
    assert.equal(r.allowed('2001:db8::abcd', 0, 4), 4)
    assert.equal(r.allowed('2001:DB8::ABCD', 0, 4), 1)
    // ::ffff:0:0/96 is IPv4 only in the dotted spelling Node uses; other IPv6 stays separate
    assert.equal(r.allowed('::1', 0, 1), 1)
  })

  it('rejects configurations it cannot honour, with a stable code', () => {
    const state = SharedState.create(64)
    const base: RateLimitConfig = { algorithm: 'fixed-window', maxRequests: 5, windowMs: 1000, tableSize: 64, trustProxy: [] }
    const code = (fn: () => unknown): string => {
      try { fn() } catch (err) { assert.ok(err instanceof SwitchyardError); return err.code }
      return 'none'
    }
    assert.equal(code(() => createRateLimiter({ ...base, maxRequests: 2 ** 24 }, state)), 'SWY_ERR_CONFIG_INVALID')
    assert.equal(code(() => createRateLimiter({ ...base, tableSize: 128 }, state)), 'SWY_ERR_CONFIG_INVALID')
    assert.equal(code(() => createRateLimiter({ ...base, algorithm: 'token-bucket', burst: 2 ** 24 }, state)), 'SWY_ERR_CONFIG_INVALID')
    assert.equal(code(() => createRateLimiter({ ...base, maxRequests: 2 ** 24 - 1 }, state)), 'none')
  })

  it('takes a slot whose key another thread is still writing (KEY_LO = 0) as its own', () => {
    // the nanoseconds between a claim's two key writes, frozen: a second
    // thread must count in that slot, not claim another one for the same address
    const r = rig({ maxRequests: 3 })
    const key = new Int32Array(2)
    hashAddress('192.0.2.1', keySeed(r.config, r.state.rateTable), key)
    let slot = key[1] & (r.config.tableSize - 1)
    if (slot === 0) slot = 1
    const base = slot * L.RATE_SLOT_INTS
    Atomics.store(r.state.rateTable, base, key[0])
    assert.equal(r.allowed('192.0.2.1', 0, 5), 3)
    assert.notEqual(Atomics.load(r.state.rateTable, base + 2), 0)
    assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 0)
  })

  it('a reload with other parameters starts every client afresh', () => {
    const r = rig({ maxRequests: 2 })
    assert.equal(r.allowed('192.0.2.1', 0, 5), 2)
    const reloaded = createRateLimiter({ ...r.config, maxRequests: 3 }, r.state)
    const d = new RateDecision()
    let allowed = 0
    for (let i = 0; i < 5; i++) if (reloaded.check('192.0.2.1', 0, d)) allowed++
    assert.equal(allowed, 3)
  })

  it('two limiters on one state (two threads) share counts and the hash seed', () => {
    const r = rig({ maxRequests: 4 })
    const other = createRateLimiter(r.config, new SharedState(r.state.toInit()))
    const d = new RateDecision()
    assert.equal(r.allowed('192.0.2.1', 0, 2), 2)
    assert.equal(other.check('192.0.2.1', 0, d), true)
    assert.equal(d.remaining, 1)
    assert.equal(r.allowed('192.0.2.1', 0, 5), 1)
    assert.equal(other.check('192.0.2.1', 0, d), false)
  })
})

describe('sliding window', () => {
  it('weights the previous window by the part of it still inside the sliding window', () => {
    const r = rig({ algorithm: 'sliding-window', maxRequests: 10, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', 100, 12), 10)
    // window 1 at 25 %: previous 10 weighs 7.5, so 2 fit (1 + 7.5, 2 + 7.5 <= 10)
    assert.equal(r.allowed('192.0.2.1', 1250, 5), 2)
    // at 50 %: weighs 5, so the current count may reach 5: 3 more
    assert.equal(r.allowed('192.0.2.1', 1500, 5), 3)
    // window 2 at 0 %: previous is window 1's 5 at full weight: 5 fit
    assert.equal(r.allowed('192.0.2.1', 2000, 8), 5)
    assert.equal(r.decision.remaining, 0)
    // window 3 skipped entirely: in window 4 nothing carries over
    assert.equal(r.allowed('192.0.2.1', 4000, 12), 10)
  })

  it('reports remaining and when to retry', () => {
    const r = rig({ algorithm: 'sliding-window', maxRequests: 10, windowMs: 10_000 })
    r.limiter.check('192.0.2.1', 1000, r.decision)
    assert.equal(r.decision.remaining, 9)
    assert.equal(r.decision.resetSeconds, 9)
    assert.equal(r.allowed('192.0.2.1', 1000, 20), 9)
    // this window is spent (10): retry when, in the next, 10 * (1 - f) <= 9: f >= 0.1, i.e. 9 s + 1 s
    assert.equal(r.decision.allowed, false)
    assert.equal(r.decision.retryAfterSeconds, 10)
    assert.equal(r.allowed('192.0.2.1', 10_999, 1), 0)
    assert.equal(r.allowed('192.0.2.1', 11_000, 1), 1)
  })

  it('is exact when the previous window carries more than the whole quota', () => {
    const r = rig({ algorithm: 'sliding-window', maxRequests: 3, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', 999, 3), 3)
    // 1 ms into window 1 the previous 3 still weigh 2.997: nothing fits
    assert.equal(r.allowed('192.0.2.1', 1001, 1), 0)
    assert.equal(r.decision.retryAfterSeconds, 1)
    // 1/3 in: weighs 2 -> 1 fits
    assert.equal(r.allowed('192.0.2.1', 1334, 2), 1)
  })
})

describe('token bucket', () => {
  it('spends the burst, then refills one token per interval', () => {
    const r = rig({ algorithm: 'token-bucket', maxRequests: 1, windowMs: 1000, burst: 5 })
    const remaining: number[] = []
    for (let i = 0; i < 5; i++) {
      assert.equal(r.limiter.check('192.0.2.1', EPOCH, r.decision), true)
      remaining.push(r.decision.remaining)
    }
    assert.deepEqual(remaining, [4, 3, 2, 1, 0])
    assert.equal(r.decision.limit, 5)
    assert.equal(r.decision.resetSeconds, 5) // an empty bucket refills in 5 s
    assert.equal(r.allowed('192.0.2.1', EPOCH, 1), 0)
    assert.equal(r.decision.retryAfterSeconds, 1)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 999, 1), 0)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 1000, 3), 1)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 1500, 1), 0)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 2000, 1), 1)
    // long idle: the bucket holds at most `burst`
    assert.equal(r.allowed('192.0.2.1', EPOCH + 100_000, 10), 5)
  })

  it('defaults the burst to maxRequests and refills fractions of a window', () => {
    const r = rig({ algorithm: 'token-bucket', maxRequests: 10, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', 0, 15), 10)
    assert.equal(r.allowed('192.0.2.1', 99, 1), 0)
    assert.equal(r.allowed('192.0.2.1', 100, 2), 1)
    assert.equal(r.allowed('192.0.2.1', 350, 5), 2)
    assert.equal(r.decision.limit, 10)
  })

  it('sees a bucket idle for longer than its clock wraps as full', () => {
    // 1024 units/ms: int32 time wraps every ~70 minutes; 40 and 100 days of idle
    const r = rig({ algorithm: 'token-bucket', maxRequests: 2, windowMs: 1000 })
    assert.equal(r.allowed('192.0.2.1', EPOCH, 5), 2)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 40 * 86_400_000, 5), 2)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 100 * 86_400_000 + 7, 5), 2)
  })

  it('handles day-long windows', () => {
    const r = rig({ algorithm: 'token-bucket', maxRequests: 1000, windowMs: 86_400_000 })
    assert.equal(r.allowed('192.0.2.1', EPOCH, 1500), 1000)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 86_400, 3), 1) // one token per 86.4 s
    // a day after that token: full again (and no more than full)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 86_400_000 + 86_399, 1500), 999)
    assert.equal(r.allowed('192.0.2.1', EPOCH + 3 * 86_400_000, 1500), 1000)
  })
})

describe('full table', () => {
  for (const algorithm of ['fixed-window', 'sliding-window', 'token-bucket'] as const) {
    it(`${algorithm}: bounded, counted, and a flood from one address stays limited`, () => {
      const r = rig({ algorithm, maxRequests: 5, windowMs: 60_000, tableSize: 64 })
      const t = EPOCH
      assert.equal(r.allowed('198.51.100.1', t, 100), 5)
      let others = 0
      for (let i = 0; i < 2000; i++) others += r.allowed(`10.${(i >> 8) & 255}.${i & 255}.1`, t, 1)
      // 63 usable slots (slot 0 is the table header)
      assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 63)
      assert.ok(r.state.header(L.H_RATE_TABLE_FULL) > 0)
      assert.ok(r.state.header(L.H_RATE_EVICTIONS) > 0)
      // evicted clients inherit counts: the table never hands out more than 5 per slot
      assert.ok(others <= 62 * 5, `${others} allowed for 2000 one-off clients`)
      assert.ok(others >= 62, `${others} allowed`)
      // the flood is still limited, evicted or not, and so is a new one
      assert.equal(r.allowed('198.51.100.1', t, 100), 0)
      assert.ok(r.allowed('198.51.100.2', t, 100) <= 5)
    })
  }

  it('reuses stale slots in the next window without evicting', () => {
    const r = rig({ maxRequests: 5, windowMs: 1000, tableSize: 64 })
    for (let i = 0; i < 500; i++) r.allowed(`10.0.${i >> 8}.${i & 255}`, 0, 1)
    const evictions = r.state.header(L.H_RATE_EVICTIONS)
    assert.equal(r.allowed('198.51.100.1', 1000, 100), 5)
    assert.equal(r.allowed('198.51.100.2', 1000, 100), 5)
    assert.equal(r.state.header(L.H_RATE_EVICTIONS), evictions)
  })
})

describe('address hash', () => {
  it('gives distinct 64-bit keys to 200 000 addresses', () => {
    const out = new Int32Array(2)
    const seen = new Set<string>()
    for (let i = 0; i < 100_000; i++) {
      hashAddress(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 12345, out)
      seen.add(`${out[0]}:${out[1]}`)
      hashAddress(`2001:db8::${i.toString(16)}`, 12345, out)
      seen.add(`${out[0]}:${out[1]}`)
    }
    assert.equal(seen.size, 200_000)
  })

  it('never produces a zero word, and depends on the seed', () => {
    const a = new Int32Array(2)
    const b = new Int32Array(2)
    hashAddress('192.0.2.1', 1, a)
    hashAddress('192.0.2.1', 2, b)
    assert.notDeepEqual(a, b)
    hashAddress('', 0, a)
    assert.ok(a[0] !== 0 && a[1] !== 0)
  })
})

describe('429 headers', () => {
  it('follow the RateLimit draft structured fields', () => {
    const r = rig({ maxRequests: 5, windowMs: 60_000 })
    r.allowed('192.0.2.1', 1000, 6)
    assert.equal(r.limiter.headers(r.decision),
      'Retry-After: 59\r\nRateLimit-Policy: "default";q=5;w=60\r\nRateLimit: "default";r=0;t=59\r\n')
    assert.equal(rateLimitHeaders(r.decision, r.config), r.limiter.headers(r.decision))
  })

  it('advertise whole-second windows', () => {
    const base: RateLimitConfig = { algorithm: 'fixed-window', maxRequests: 10, windowMs: 100, tableSize: 64, trustProxy: [] }
    assert.equal(policyLine(base), 'RateLimit-Policy: "default";q=100;w=1\r\n')
    assert.equal(policyLine({ ...base, maxRequests: 3, windowMs: 1500 }), 'RateLimit-Policy: "default";q=4;w=2\r\n')
    assert.equal(policyLine({ ...base, algorithm: 'token-bucket', maxRequests: 1, windowMs: 1000, burst: 10 }), 'RateLimit-Policy: "default";q=10;w=10\r\n')
  })
})

describe('client address', () => {
  it('without trustProxy is always the socket address', () => {
    const resolve = createClientIpResolver([])
    assert.equal(resolve('192.0.2.1', '203.0.113.9'), '192.0.2.1')
    assert.equal(resolve('192.0.2.1', null), '192.0.2.1')
  })

  const resolve = createClientIpResolver(['10.0.0.0/8', '2001:db8::/32'])

  it('walks X-Forwarded-For right to left past trusted proxies', () => {
    assert.equal(resolve('10.0.0.1', '203.0.113.9'), '203.0.113.9')
    assert.equal(resolve('10.0.0.1', '203.0.113.9, 10.0.0.2'), '203.0.113.9')
    // a client-written entry on the left is not believed
    assert.equal(resolve('10.0.0.1', '1.1.1.1, 203.0.113.9, 10.0.0.2'), '203.0.113.9')
    assert.equal(resolve('10.0.0.1', '\t203.0.113.9 ,, 10.0.0.2 '), '203.0.113.9')
  })

  it('takes the leftmost address when every entry is trusted', () => {
    assert.equal(resolve('10.0.0.1', '10.0.0.3, 10.0.0.2'), '10.0.0.3')
    assert.equal(resolve('10.0.0.1', ''), '10.0.0.1')
    assert.equal(resolve('10.0.0.1', null), '10.0.0.1')
  })

  it('ignores the header from an untrusted peer', () => {
    assert.equal(resolve('198.51.100.1', '203.0.113.9'), '198.51.100.1')
    assert.equal(resolve('198.51.100.1', '10.0.0.3'), '198.51.100.1')
  })

  it('stops at an entry that is not an address', () => {
    assert.equal(resolve('10.0.0.1', '1.1.1.1, unknown, 10.0.0.2'), '10.0.0.2')
    assert.equal(resolve('10.0.0.1', '1.1.1.1, 203.0.113.9:5555'), '10.0.0.1')
  })

  it('handles IPv6 and IPv4-mapped peers', () => {
    assert.equal(resolve('::ffff:10.0.0.1', '203.0.113.9'), '203.0.113.9')
    assert.equal(resolve('2001:db8::1', '2600::1, 2001:db8::7'), '2600::1')
    assert.equal(resolve('2600::2', '2600::1'), '2600::2')
  })
})
