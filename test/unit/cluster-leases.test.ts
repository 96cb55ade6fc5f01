/**
 * Lease arithmetic, single process, against a FAKE Redis that implements the
 * fixed-window lease script's rules in JavaScript (the real scripts run
 * against a real redis-server in test/e2e/cluster.test.ts). What is checked
 * here is the instance side: spending leases in shared memory, the negative
 * cache, coalescing, lease sizing, hand-backs, and the failure modes.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { SharedState } from '../../src/shared/state'
import * as L from '../../src/shared/layout'
import type { RateLimitConfig } from '../../src/config/types'
import { RateDecision } from '../../src/ratelimit'
import { LeaseSlots } from '../../src/cluster/lease-slots'
import { LeaseManager, MAX_LEASE } from '../../src/cluster/leases'
import { GlobalRateLimiter, LeaseBroker } from '../../src/cluster/global-limiter'
import type { RedisLink } from '../../src/cluster/redis-link'

const WINDOW_MS = 60_000
const CONFIG: RateLimitConfig = { algorithm: 'fixed-window', maxRequests: 50, windowMs: WINDOW_MS, tableSize: 256, trustProxy: [] }

/** The fixed-window lease and return scripts' rules, with a clock pinned to the middle of a window. */
class FakeRedis {
  readonly counts = new Map<string, { w: number, n: number }>()
  readonly calls: Array<{ name: string, want: number }> = []
  private readonly base = (Math.floor(Date.now() / WINDOW_MS) + 0.5) * WINDOW_MS
  private readonly started = Date.now()
  up = true
  commands = 0

  now (): number { return this.base + (Date.now() - this.started) }

  async script (name: string, keys: string[], args: number[]): Promise<unknown> {
    if (!this.up) throw new Error('down')
    this.commands++
    const now = this.now()
    const w = Math.floor(now / args[1])
    const entry = this.counts.get(keys[0])
    const used = entry !== undefined && entry.w === w ? entry.n : 0
    if (name === 'swyFixedReturn') {
      if (entry !== undefined && entry.w === args[1]) entry.n = Math.max(0, entry.n - args[0])
      return 1
    }
    const [limit, , want, live] = args
    this.calls.push({ name, want })
    const left = limit - used
    const bound = Math.max(1, Math.floor(left / (2 * live)))
    const granted = left <= 0 ? 0 : Math.min(want, bound, left)
    this.counts.set(keys[0], { w, n: used + granted })
    return [granted, w, granted === 0 ? (w + 1) * args[1] - now : 0, now]
  }
}

interface Instance { state: SharedState, slots: LeaseSlots, manager: LeaseManager, limiter: GlobalRateLimiter, decision: RateDecision }

function instance (redis: FakeRedis, live: number, config = CONFIG): Instance {
  const state = SharedState.create(config.tableSize)
  state.storeHeader(L.H_CLUSTER_LIVE, live)
  state.storeHeader(L.H_CLUSTER_MODE, L.CLUSTER_GLOBAL)
  const slots = new LeaseSlots(config, state)
  const manager = new LeaseManager(redis as unknown as RedisLink, slots, config, 'test:', () => live, (sentAt, redisNow, receivedAt) => { state.storeHeader(L.H_CLUSTER_CLOCK_OFFSET, Math.round(redisNow - (sentAt + receivedAt) / 2)) })
  manager.stop() // sweeps are driven by hand where a test needs them
  state.storeHeader(L.H_CLUSTER_CLOCK_OFFSET, redis.now() - Date.now())
  const broker = new LeaseBroker(() => {}, 20)
  return { state, slots, manager, limiter: new GlobalRateLimiter(config, 'local-share', state, broker), decision: new RateDecision() }
}

/** One request on `inst`: spend a lease, asking the (fake) Redis when none is held, as a parked request would. */
async function request (inst: Instance, ip: string): Promise<boolean> {
  for (let round = 0; round < 5; round++) {
    if (inst.limiter.check(ip, Date.now(), inst.decision)) return true
    if (!inst.decision.pending) return false
    await inst.manager.ask(ip, 1)
  }
  throw new Error('no answer after 5 asks')
}

describe('cluster leases: shared-memory slots', () => {
  it('nothing leased is pending; a grant is spent exactly; a denial refuses locally until its time', () => {
    const redis = new FakeRedis()
    const { slots, decision } = instance(redis, 1)
    const now = Date.now()
    const period = Math.floor(redis.now() / WINDOW_MS)
    assert.equal(slots.check('192.0.2.1', now, decision), false)
    assert.equal(decision.pending, true)
    assert.equal(slots.grant('192.0.2.1', now, period, 3, 0), 0)
    let spent = 0
    for (let i = 0; i < 5; i++) if (slots.check('192.0.2.1', now, decision)) spent++
    assert.equal(spent, 3)
    assert.equal(decision.pending, true)
    slots.grant('192.0.2.1', now, period, 0, 4500)
    assert.equal(slots.check('192.0.2.1', now, decision), false)
    assert.equal(decision.pending, false, 'the negative cache answers without asking')
    assert.equal(decision.retryAfterSeconds, 5)
    assert.equal(slots.check('192.0.2.1', now + 4600, decision), false)
    assert.equal(decision.pending, true, 'after the denial expires, ask again')
  })

  it('a lease of an earlier period is never spent, and comes back as leftover', () => {
    const redis = new FakeRedis()
    const { slots, decision } = instance(redis, 1)
    const now = Date.now()
    const period = Math.floor(redis.now() / WINDOW_MS)
    slots.grant('192.0.2.2', now, period - 1, 4, 0)
    assert.equal(slots.check('192.0.2.2', now, decision), false)
    assert.equal(decision.pending, true)
    assert.equal(slots.grant('192.0.2.2', now, period, 2, 0), 4, 'the old period\'s 4 are handed back')
    assert.equal(slots.takeBack('192.0.2.2', now, period), 2)
    assert.equal(slots.held('192.0.2.2', now, period), 0)
  })
})

describe('cluster leases: the manager against a fake Redis', () => {
  it('three instances, demand 3x the limit interleaved: exactly the limit is admitted', async () => {
    const redis = new FakeRedis()
    const fleet = [instance(redis, 3), instance(redis, 3), instance(redis, 3)]
    let admitted = 0
    for (let i = 0; i < 150; i++) if (await request(fleet[i % 3], '198.51.100.1')) admitted++
    assert.equal(admitted, CONFIG.maxRequests)
    // one more on each: refused by the negative cache, without a Redis call
    const calls = redis.commands
    for (const inst of fleet) assert.equal(await request(inst, '198.51.100.1'), false)
    assert.equal(redis.commands, calls)
    // another client is independent
    assert.equal(await request(fleet[0], '198.51.100.2'), true)
  })

  it('a quiet client leases 1; one asking again at once gets doubling leases, bounded by left / (2 x live)', async () => {
    const redis = new FakeRedis()
    const config = { ...CONFIG, maxRequests: 10_000 }
    const inst = instance(redis, 2, config)
    await inst.manager.ask('203.0.113.1', 1)
    assert.equal(redis.calls[0].want, 1)
    for (let i = 0; i < 12; i++) await inst.manager.ask('203.0.113.1', 1)
    const wants = redis.calls.map((c) => c.want)
    assert.deepEqual(wants.slice(0, 5), [1, 2, 4, 8, 16])
    assert.equal(Math.max(...wants), MAX_LEASE)
    const held = inst.slots.held('203.0.113.1', Date.now(), Math.floor(redis.now() / WINDOW_MS))
    assert.ok(held <= 10_000)
  })

  it('concurrent asks for one client become one Redis call', async () => {
    const redis = new FakeRedis()
    const inst = instance(redis, 1)
    const answers = await Promise.all(Array.from({ length: 8 }, async () => await inst.manager.ask('203.0.113.2', 1)))
    assert.deepEqual(answers, Array(8).fill(true))
    assert.equal(redis.calls.length, 1)
  })

  it('a Redis call that fails answers false (the asking requests apply the failure mode)', async () => {
    const redis = new FakeRedis()
    const inst = instance(redis, 1)
    redis.up = false
    assert.equal(await inst.manager.ask('203.0.113.3', 1), false)
  })
})

describe('cluster leases: failure modes', () => {
  for (const [mode, expected] of [['local-share', 10], ['open', 40], ['closed', 0]] as const) {
    it(`${mode}: with 3 live instances and a limit of 30, one instance admits ${expected} of 40`, () => {
      const config = { ...CONFIG, maxRequests: 30 }
      const state = SharedState.create(config.tableSize)
      state.storeHeader(L.H_CLUSTER_LIVE, 3)
      state.storeHeader(L.H_CLUSTER_MODE, L.CLUSTER_DEGRADED)
      const limiter = new GlobalRateLimiter(config, mode, state, new LeaseBroker(() => {}, 20))
      const decision = limiter.newDecision()
      let admitted = 0
      for (let i = 0; i < 40; i++) if (limiter.check('192.0.2.9', Date.now(), decision)) admitted++
      assert.equal(admitted, expected)
      if (expected < 40) assert.ok(decision.retryAfterSeconds >= 1)
    })
  }

  it('a failed lease (fallback set on the decision) applies the failure mode even while the mode word says global', () => {
    const state = SharedState.create(CONFIG.tableSize)
    state.storeHeader(L.H_CLUSTER_LIVE, 1)
    state.storeHeader(L.H_CLUSTER_MODE, L.CLUSTER_GLOBAL)
    const limiter = new GlobalRateLimiter(CONFIG, 'open', state, new LeaseBroker(() => {}, 20))
    const decision = limiter.newDecision()
    assert.equal(limiter.check('192.0.2.10', Date.now(), decision), false)
    assert.equal(decision.pending, true)
    decision.fallback = true
    assert.equal(limiter.check('192.0.2.10', Date.now(), decision), true)
    assert.equal(decision.fallback, false, 'only once')
  })
})

describe('cluster leases: the broker', () => {
  it('parks requests per client, sends one ask per client, wakes them all, and gives up after timeoutMs', async () => {
    const asked: string[] = []
    const broker = new LeaseBroker((_policy, ip) => { asked.push(ip) }, 10)
    const woken: Array<[string, boolean]> = []
    const waiter = (name: string): { onLease: (failed: boolean) => void } => ({ onLease: (failed) => { woken.push([name, failed]) } })
    broker.wait('', 'a', waiter('a1'))
    broker.wait('', 'a', waiter('a2'))
    broker.wait('', 'b', waiter('b1'))
    broker.wait('route:r', 'a', waiter('a3'))
    assert.deepEqual(asked, ['a', 'b', 'a'], 'one ask per client per limit')
    broker.settle('', 'a', true)
    assert.deepEqual(woken, [['a1', false], ['a2', false]])
    await new Promise((resolve) => setTimeout(resolve, 80))
    assert.deepEqual(woken.slice(2).sort(), [['a3', true], ['b1', true]])
  })
})
