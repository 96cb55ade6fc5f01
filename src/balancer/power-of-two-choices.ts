/**
 * Power of two choices (Mitzenmacher): draw two distinct available upstreams
 * uniformly at random and send to the one with fewer requests in flight per
 * unit of weight. Nearly as good as least-connections at spreading load, but
 * reads two counters instead of all of them, and threads that see the same
 * counters do not all pile onto the same "least" upstream at once (the herd
 * effect of least-connections with stale loads).
 *
 * Draws are uniform over upstreams; weight enters only through the load
 * comparison (a weight-2 upstream wins until it carries twice the requests).
 * Drawing by rejection (retry when the draw is unavailable or tried) keeps the
 * pair uniform among available upstreams; after a few misses a scan counts the
 * available ones and draws ranks instead, so a pick is bounded.
 */
import { U_ACTIVE_REQUESTS } from '../shared/layout'
import type { UpstreamEntry } from '../shared/state'
import { randomSeed, scaleToRange, xorshift32 } from './hash'
import type { Balancer, PickContext, BalancerState } from './types'

const DRAW_ATTEMPTS = 4

export class PowerOfTwoChoicesBalancer implements Balancer {
  private readonly state: BalancerState
  private readonly slots: Int32Array
  private readonly weights: Int32Array
  private rng: number

  /** `seed` (non-zero) makes the sequence of picks reproducible, for tests and benchmarks. */
  constructor (table: readonly UpstreamEntry[], state: BalancerState, seed = randomSeed()) {
    this.state = state
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    this.weights = Int32Array.from(table, (entry) => Math.max(1, Math.floor(entry.weight)))
    this.rng = seed | 0 || 1
  }

  pick (ctx: PickContext): number {
    const count = this.slots.length
    if (count === 0) return -1
    let first = -1
    for (let attempt = 0; attempt < DRAW_ATTEMPTS; attempt++) {
      this.rng = xorshift32(this.rng)
      const index = scaleToRange(this.rng, count)
      if (this.usable(ctx, index)) { first = index; break }
    }
    if (first === -1) return this.pickByScan(ctx)
    if (count === 1) return first
    for (let attempt = 0; attempt < DRAW_ATTEMPTS; attempt++) {
      this.rng = xorshift32(this.rng)
      // uniform over the other count - 1 indexes: skip over `first`
      let index = scaleToRange(this.rng, count - 1)
      if (index >= first) index++
      if (this.usable(ctx, index)) return this.lessLoaded(first, index)
    }
    // `first` may be the only one left; the scan knows.
    return this.pickByScan(ctx)
  }

  private usable (ctx: PickContext, index: number): boolean {
    return ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])
  }

  /** `a` unless `b` carries fewer requests per unit of weight; ties go to `a`, itself a random draw. */
  private lessLoaded (a: number, b: number): number {
    const activeA = this.state.upstream(this.slots[a], U_ACTIVE_REQUESTS)
    const activeB = this.state.upstream(this.slots[b], U_ACTIVE_REQUESTS)
    return activeB * this.weights[a] < activeA * this.weights[b] ? b : a
  }

  /** Count the available upstreams, draw two distinct ranks among them, compare. */
  private pickByScan (ctx: PickContext): number {
    const count = this.slots.length
    let available = 0
    let only = -1
    for (let i = 0; i < count; i++) {
      if (this.usable(ctx, i)) { available++; only = i }
    }
    if (available <= 1) return only
    this.rng = xorshift32(this.rng)
    const rankA = scaleToRange(this.rng, available)
    this.rng = xorshift32(this.rng)
    let rankB = scaleToRange(this.rng, available - 1)
    if (rankB >= rankA) rankB++
    let a = -1
    let b = -1
    let rank = 0
    for (let i = 0; i < count && (a === -1 || b === -1); i++) {
      if (!this.usable(ctx, i)) continue
      if (rank === rankA) a = i
      else if (rank === rankB) b = i
      rank++
    }
    // Health can change between the scans (another thread ejects one): settle
    // for whichever of the two was still found.
    if (a === -1) return b
    if (b === -1) return a
    return this.lessLoaded(a, b)
  }
}
