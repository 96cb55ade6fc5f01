/**
 * Random, weighted: each available upstream is chosen with probability
 * weight / (sum of available weights); with equal weights that is uniform.
 *
 * A draw is O(1): `buckets` holds each table index `weight` times (after gcd
 * reduction), so a uniform bucket is a weighted upstream. A draw that lands on
 * an unavailable or tried upstream is retried a few times (rejection keeps the
 * result exactly proportional among the available ones), then a scan over the
 * available weights decides, so a pick is bounded even when most are down.
 *
 * Each instance (one per thread) has its own xorshift stream: no shared state
 * is written, and nothing needs to be.
 */
import type { UpstreamEntry } from '../shared/state'
import { randomSeed, scaleToRange, xorshift32 } from './hash'
import type { Balancer, PickContext, BalancerState } from './types'
import { reducedWeights } from './weighted-round-robin'

/** Rejected draws before scanning; 4 misses in a row needs most weight to be unavailable. */
const DRAW_ATTEMPTS = 4

export class RandomBalancer implements Balancer {
  readonly redraws = true
  private readonly state: BalancerState
  private readonly slots: Int32Array
  private readonly weights: Int32Array
  private readonly buckets: Uint8Array
  private rng: number

  /** `seed` (non-zero) makes the sequence of picks reproducible, for tests and benchmarks. */
  constructor (table: readonly UpstreamEntry[], state: BalancerState, seed = randomSeed()) {
    this.state = state
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    this.weights = reducedWeights(table)
    let total = 0
    for (const w of this.weights) total += w
    this.buckets = new Uint8Array(total)
    let bucket = 0
    for (let i = 0; i < this.weights.length; i++) {
      this.buckets.fill(i, bucket, bucket + this.weights[i])
      bucket += this.weights[i]
    }
    this.rng = seed | 0 || 1
  }

  pick (ctx: PickContext): number {
    const length = this.buckets.length
    if (length === 0) return -1
    for (let attempt = 0; attempt < DRAW_ATTEMPTS; attempt++) {
      this.rng = xorshift32(this.rng)
      const index = this.buckets[scaleToRange(this.rng, length)]
      if (ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])) return index
    }
    return this.pickByScan(ctx)
  }

  private pickByScan (ctx: PickContext): number {
    const count = this.slots.length
    let availableWeight = 0
    for (let i = 0; i < count; i++) {
      if (ctx.tried[i] === 0 && this.state.isAvailable(this.slots[i])) availableWeight += this.weights[i]
    }
    if (availableWeight === 0) return -1
    this.rng = xorshift32(this.rng)
    let target = scaleToRange(this.rng, availableWeight)
    let last = -1
    for (let i = 0; i < count; i++) {
      if (ctx.tried[i] !== 0 || !this.state.isAvailable(this.slots[i])) continue
      last = i
      target -= this.weights[i]
      if (target < 0) return i
    }
    // Another thread ejected one between the scans: the last available will do.
    return last
  }
}
