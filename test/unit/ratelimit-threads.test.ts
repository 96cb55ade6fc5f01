/**
 * Exactness across real threads: 4 worker_threads check the same addresses in
 * the same SharedState at the same moments (a barrier starts each phase), so
 * slot claims, window rolls and counts race for real. Totals must be exact.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { runThreadJob } from '../helpers'
import { SharedState } from '../../src/shared/state'
import * as L from '../../src/shared/layout'
import type { RateLimitConfig } from '../../src/config/types'
import type { ThreadJob } from './ratelimit-thread-worker'

const THREADS = 4
const WORKER = join(__dirname, 'ratelimit-thread-worker.js')
const EPOCH = 1_760_000_000_000

interface Result { perPhase: number[], perIp: number[], state: SharedState }

async function hammer (overrides: Partial<RateLimitConfig>, ips: string[], attemptsPerPhase: number, phaseNowMs: number[]): Promise<Result> {
  const config: RateLimitConfig = { algorithm: 'fixed-window', maxRequests: 5, windowMs: 60_000, tableSize: 1024, trustProxy: [], ...overrides }
  const state = SharedState.create(config.tableSize)
  const job: ThreadJob = { init: state.toInit(), config, ips, attemptsPerPhase, phaseNowMs, threads: THREADS, barrier: new SharedArrayBuffer(4) }
  const results = await Promise.all(Array.from({ length: THREADS }, async () =>
    await runThreadJob<{ allowedPerPhase: number[], allowedPerIp: number[] }>(WORKER, job)))
  const perPhase = phaseNowMs.map((_, p) => results.reduce((sum, r) => sum + r.allowedPerPhase[p], 0))
  const perIp = ips.map((_, i) => results.reduce((sum, r) => sum + r.allowedPerIp[i], 0))
  return { perPhase, perIp, state }
}

describe('rate limits are exact across threads', () => {
  it('fixed window: 4 threads, one address, maxRequests 5, over three windows', async () => {
    const r = await hammer({ maxRequests: 5, windowMs: 1000 }, ['192.0.2.1'], 500, [EPOCH, EPOCH + 1000, EPOCH + 2000])
    assert.deepEqual(r.perPhase, [5, 5, 5])
    assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 1)
  })

  it('fixed window: maxRequests 50 with 200 attempts', async () => {
    const r = await hammer({ maxRequests: 50, windowMs: 1000 }, ['2001:db8::1'], 50, [EPOCH, EPOCH + 1000])
    assert.deepEqual(r.perPhase, [50, 50])
  })

  it('fixed window: 16 addresses claimed at once', async () => {
    const ips = Array.from({ length: 16 }, (_, i) => `198.51.100.${i + 1}`)
    const r = await hammer({ maxRequests: 5 }, ips, 400, [EPOCH])
    assert.deepEqual(r.perIp, ips.map(() => 5))
    assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 16)
  })

  it('fixed window: a long contended run, maxRequests 20 000 with 40 000 attempts', async () => {
    const r = await hammer({ maxRequests: 20_000 }, ['192.0.2.1'], 10_000, [EPOCH])
    assert.deepEqual(r.perPhase, [20_000])
  })

  it('fixed window: 2000 addresses claimed by every thread in step', async () => {
    const ips = Array.from({ length: 2000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`)
    const r = await hammer({ maxRequests: 3, tableSize: 8192 }, ips, 6000, [EPOCH])
    assert.deepEqual(r.perIp, ips.map(() => 3))
    assert.equal(r.state.header(L.H_RATE_SLOTS_USED), 2000)
  })

  it('sliding window: the full quota, then the weighted remainder', async () => {
    // window 1 at 50 %: the previous 50 weigh 25, so 25 more fit
    const r = await hammer({ algorithm: 'sliding-window', maxRequests: 50, windowMs: 1000 }, ['192.0.2.1'], 100, [1_000_000, 1_001_500])
    assert.deepEqual(r.perPhase, [50, 25])
  })

  it('token bucket: the burst, then exactly the refill', async () => {
    const r = await hammer({ algorithm: 'token-bucket', maxRequests: 5, windowMs: 1000 }, ['192.0.2.1'], 500, [EPOCH, EPOCH + 400, EPOCH + 10_000])
    assert.deepEqual(r.perPhase, [5, 2, 5])
  })

  it('token bucket: maxRequests 50 with 200 attempts', async () => {
    const r = await hammer({ algorithm: 'token-bucket', maxRequests: 50, windowMs: 1000 }, ['192.0.2.1'], 50, [EPOCH])
    assert.deepEqual(r.perPhase, [50])
  })

  it('token bucket and sliding window: long contended runs', async () => {
    const bucket = await hammer({ algorithm: 'token-bucket', maxRequests: 20_000, windowMs: 1000 }, ['192.0.2.1'], 10_000, [EPOCH])
    assert.deepEqual(bucket.perPhase, [20_000])
    const sliding = await hammer({ algorithm: 'sliding-window', maxRequests: 20_000, windowMs: 1000 }, ['192.0.2.1'], 10_000, [EPOCH])
    assert.deepEqual(sliding.perPhase, [20_000])
  })
})
