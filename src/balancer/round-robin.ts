/**
 * Round robin over one cursor shared by every thread (Pingora's fetch_add):
 * each pick takes the next global position, so rotation is global however
 * requests spread over workers. A per-thread cursor would send the first
 * request of every worker to upstream 0.
 *
 * One Atomics.add per pick, whatever is down. When the cursor lands on an
 * upstream that is down or already tried, the turn goes to a pseudo-random
 * other upstream drawn from the cursor value (rejection: uniform among the
 * available ones), not simply to the next index: probing onward would hand
 * all of a down upstream's traffic to its neighbour, doubling that one's load
 * exactly when the pool has lost capacity. A linear sweep ends the search, so
 * a pick is bounded and finds the last available upstream if there is one.
 */
import type { UpstreamEntry } from '../shared/state'
import { remix, scaleToRange } from './hash'
import type { Balancer, PickContext, BalancerState } from './types'

/** Draws before the sweep; with one of four upstreams down, 4 misses in a row happen 1 time in 256. */
const DRAW_ATTEMPTS = 4

export class RoundRobinBalancer implements Balancer {
  readonly redraws = true
  private readonly state: BalancerState
  /** The pool's shared cursor (every entry of a table belongs to one pool). */
  private readonly poolSlot: number
  /** slots[i] = shared-state slot of table[i], copied out so a pick does not chase entry objects. */
  private readonly slots: Int32Array

  constructor (table: readonly UpstreamEntry[], state: BalancerState) {
    this.state = state
    this.poolSlot = table.length > 0 ? table[0].poolSlot : 0
    this.slots = Int32Array.from(table, (entry) => entry.slot)
  }

  pick (ctx: PickContext): number {
    const count = this.slots.length
    if (count === 0) return -1
    const cursor = this.state.nextCursor(this.poolSlot)
    // The uint32 cursor wraps every 2^32 picks; when count does not divide
    // 2^32 that shifts the rotation once, which nobody can observe.
    const start = cursor % count
    if (this.usable(ctx, start)) return start
    let draw = cursor
    for (let attempt = 0; attempt < DRAW_ATTEMPTS; attempt++) {
      draw = remix(draw)
      const index = scaleToRange(draw, count)
      if (this.usable(ctx, index)) return index
    }
    let index = start
    for (let probe = 1; probe < count; probe++) {
      if (++index === count) index = 0
      if (this.usable(ctx, index)) return index
    }
    return -1
  }

  private usable (ctx: PickContext, index: number): boolean {
    return ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])
  }
}
