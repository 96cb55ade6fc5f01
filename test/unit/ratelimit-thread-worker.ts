/**
 * Worker for ratelimit-threads.test.ts: attaches to the test's shared state,
 * waits at a barrier so every thread starts each phase together, hammers the
 * limiter, and reports how many requests each phase allowed. (A test thread
 * owns no sockets, so Atomics.wait is fine here.)
 */
import { parentPort, workerData } from 'node:worker_threads'
import { SharedState, type SharedStateInit } from '../../src/shared/state'
import type { RateLimitConfig } from '../../src/config/types'
import { createRateLimiter } from '../../src/ratelimit'

export interface ThreadJob {
  init: SharedStateInit
  config: RateLimitConfig
  /** Addresses checked round-robin. */
  ips: string[]
  attemptsPerPhase: number
  /** The clock of each phase (every thread uses the same). */
  phaseNowMs: number[]
  threads: number
  /** [arrived at barrier] */
  barrier: SharedArrayBuffer
}

const job = workerData as ThreadJob
const limiter = createRateLimiter(job.config, new SharedState(job.init))
const decision = limiter.newDecision()
const barrier = new Int32Array(job.barrier)

function waitForAll (generation: number): void {
  Atomics.add(barrier, 0, 1)
  const target = job.threads * generation
  for (;;) {
    const arrived = Atomics.load(barrier, 0)
    if (arrived >= target) return
    Atomics.wait(barrier, 0, arrived, 5)
  }
}

const allowedPerPhase: number[] = []
const allowedPerIp: number[] = new Array<number>(job.ips.length).fill(0)
for (let phase = 0; phase < job.phaseNowMs.length; phase++) {
  waitForAll(phase + 1)
  const nowMs = job.phaseNowMs[phase]
  let allowed = 0
  for (let i = 0; i < job.attemptsPerPhase; i++) {
    const ip = i % job.ips.length
    if (limiter.check(job.ips[ip], nowMs, decision)) { allowed++; allowedPerIp[ip]++ }
  }
  allowedPerPhase.push(allowed)
}
parentPort?.postMessage({ allowedPerPhase, allowedPerIp })
