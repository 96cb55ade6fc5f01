/**
 * Smooth weighted round robin, as nginx does it, made global across threads.
 *
 * nginx keeps a `current_weight` per upstream and per process, so with N
 * workers the interleaving is only smooth within each worker. Here the whole
 * smooth sequence (one cycle, length = sum of weights) is computed once when
 * the table is built, and the shared round-robin cursor indexes it: every
 * thread walks the same sequence, one global position per pick.
 *
 *   weights a=1 b=2 c=3  ->  sequence  c b a c b c  (then repeats)
 *
 * Weights are reduced by their gcd first (10:20:30 is 1:2:3); the longest
 * sequence is 64 upstreams x weight 1000 = 64,000 bytes.
 */
import type { UpstreamEntry } from '../shared/state'
import { remix, scaleToRange } from './hash'
import type { Balancer, PickContext, BalancerState } from './types'

/** Draws before the scan; 4 misses in a row need most of the weight to be unavailable. */
const DRAW_ATTEMPTS = 4

/** Upstream weights divided by their greatest common divisor (a weight below 1 counts as 1). */
export function reducedWeights (table: readonly UpstreamEntry[]): Int32Array {
  const weights = Int32Array.from(table, (entry) => Math.max(1, Math.floor(entry.weight)))
  let divisor = 0
  for (const w of weights) divisor = gcd(divisor, w)
  if (divisor > 1) for (let i = 0; i < weights.length; i++) weights[i] /= divisor
  return weights
}

function gcd (a: number, b: number): number {
  while (b !== 0) { const t = a % b; a = b; b = t }
  return a
}

/**
 * One cycle of nginx's smooth weighted round robin (ngx_http_upstream_get_peer):
 * every step, each upstream's current weight grows by its weight, the largest
 * (first on ties) is chosen and loses the total. Each upstream appears exactly
 * `weight` times, spread out rather than in runs.
 */
export function smoothWeightedSequence (weights: Int32Array): Uint8Array {
  let total = 0
  for (const w of weights) total += w
  const sequence = new Uint8Array(total)
  const current = new Float64Array(weights.length)
  for (let step = 0; step < total; step++) {
    let best = 0
    for (let i = 0; i < weights.length; i++) {
      current[i] += weights[i]
      if (current[i] > current[best]) best = i
    }
    current[best] -= total
    sequence[step] = best
  }
  return sequence
}

export class WeightedRoundRobinBalancer implements Balancer {
  readonly redraws = true
  private readonly state: BalancerState
  /** The pool's shared cursor (every entry of a table belongs to one pool). */
  private readonly poolSlot: number
  private readonly slots: Int32Array
  /** Upstream weights after gcd reduction, for the last-resort path. */
  private readonly weights: Int32Array
  /** One cycle of table indexes in smooth WRR order. */
  private readonly sequence: Uint8Array

  constructor (table: readonly UpstreamEntry[], state: BalancerState) {
    this.state = state
    this.poolSlot = table.length > 0 ? table[0].poolSlot : 0
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    this.weights = reducedWeights(table)
    this.sequence = smoothWeightedSequence(this.weights)
  }

  pick (ctx: PickContext): number {
    const length = this.sequence.length
    if (length === 0) return -1
    const cursor = this.state.nextCursor(this.poolSlot)
    const index = this.sequence[cursor % length]
    if (this.usable(ctx, index)) return index
    // The turn of an upstream that is down or tried goes to a position of
    // the sequence drawn from the cursor value: a uniform position is a
    // weight-proportional upstream, and retrying on a miss keeps the shares
    // proportional among the available ones (with 1:2:3 and the 3 down, 1:2).
    // Taking the next position instead would give the down upstream's share
    // to whichever follows it in the sequence (there: 1:5).
    let draw = cursor
    for (let attempt = 0; attempt < DRAW_ATTEMPTS; attempt++) {
      draw = remix(draw)
      const drawn = this.sequence[scaleToRange(draw, length)]
      if (this.usable(ctx, drawn)) return drawn
    }
    return this.pickByScan(ctx, remix(draw))
  }

  private usable (ctx: PickContext, index: number): boolean {
    return ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])
  }

  /**
   * Last resort when the draws kept missing (most of the weight is down):
   * sum the available weights and draw among them, so a pick stays bounded
   * (O(upstreams), not O(sequence length)) and still weight-proportional.
   */
  private pickByScan (ctx: PickContext, draw: number): number {
    const count = this.slots.length
    let availableWeight = 0
    for (let i = 0; i < count; i++) {
      if (this.usable(ctx, i)) availableWeight += this.weights[i]
    }
    if (availableWeight === 0) return -1
    let target = scaleToRange(draw, availableWeight)
    let last = -1
    for (let i = 0; i < count; i++) {
      if (!this.usable(ctx, i)) continue
      last = i
      target -= this.weights[i]
      if (target < 0) return i
    }
    // Another thread ejected one between the scans: the last available will do.
    return last
  }
}
