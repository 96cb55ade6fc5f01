/**
 * RateLimiter.check() per algorithm over the shared table, next to the naive
 * single-process way: a Map<string, { window, count }> that allocates an entry
 * per client per window and cannot be shared between threads. Two workloads:
 * 1024 clients under their limit (lookup + count), and one client over its
 * limit (the refusal path, which writes nothing).
 */
import { SharedState } from '../../src/shared/state'
import type { RateLimitConfig } from '../../src/config/types'
import { createRateLimiter, RateDecision, type RateLimiter } from '../../src/ratelimit/index'
import type { MicroCase, MicroSuite } from './types'

const EPOCH = 1_760_000_000_000
const algorithms = ['fixed-window', 'sliding-window', 'token-bucket'] as const
const clients = Array.from({ length: 1024 }, (_, i) => i % 4 === 0 ? `2001:db8::${i.toString(16)}` : `192.168.${i >> 8}.${i & 255}`)
const decision = new RateDecision()
/** Written by every case so the JIT cannot drop the check. */
export let sink = 0

function limiter (algorithm: RateLimitConfig['algorithm'], maxRequests: number): RateLimiter {
  const config: RateLimitConfig = { algorithm, maxRequests, windowMs: 60_000, tableSize: 65_536, trustProxy: [] }
  return createRateLimiter(config, SharedState.create(config.tableSize))
}

/** The obvious per-process limiter. */
class NaiveMapLimiter {
  private readonly entries = new Map<string, { window: number, count: number }>()
  constructor (private readonly maxRequests: number, private readonly windowMs: number) {}
  check (ip: string, nowMs: number): boolean {
    const window = Math.floor(nowMs / this.windowMs)
    let entry = this.entries.get(ip)
    if (entry === undefined || entry.window !== window) {
      entry = { window, count: 0 }
      this.entries.set(ip, entry)
    }
    return ++entry.count <= this.maxRequests
  }
}

function manyClients (): MicroSuite {
  // a limit no client reaches during a run; the clock moves 1 ms every 1024 checks
  const cases: MicroCase[] = algorithms.map((algorithm) => {
    const l = limiter(algorithm, 16_000_000)
    let n = 0
    return { name: algorithm, fn: () => { if (l.check(clients[n & 1023], EPOCH + (n >> 10), decision)) sink++; n++ } }
  })
  const naive = new NaiveMapLimiter(16_000_000, 60_000)
  let n = 0
  cases.push({ name: 'naive Map<string,{window,count}>', fn: () => { if (naive.check(clients[n & 1023], EPOCH + (n >> 10))) sink++; n++ } })
  return { name: 'check(): 1024 clients under their limit', cases }
}

function oneFlood (): MicroSuite {
  const cases: MicroCase[] = algorithms.map((algorithm) => {
    const l = limiter(algorithm, 5)
    return { name: algorithm, fn: () => { if (!l.check('203.0.113.66', EPOCH, decision)) sink++ } }
  })
  const naive = new NaiveMapLimiter(5, 60_000)
  cases.push({ name: 'naive Map<string,{window,count}>', fn: () => { if (!naive.check('203.0.113.66', EPOCH)) sink++ } })
  return { name: 'check(): one client over its limit', cases }
}

export const suites: MicroSuite[] = [manyClients(), oneFlood()]
