/**
 * Least connections: the available upstream with the fewest requests in
 * flight per unit of weight (U_ACTIVE_REQUESTS, counted by whichever thread
 * serves the request, so the load seen is global). Equal loads are broken by
 * a start position taken from the shared round-robin cursor: an idle pool
 * still rotates instead of sending every request to upstream 0.
 */
import { U_ACTIVE_REQUESTS } from '../shared/layout'
import type { UpstreamEntry } from '../shared/state'
import type { Balancer, PickContext, BalancerState } from './types'

export class LeastConnectionsBalancer implements Balancer {
  private readonly state: BalancerState
  /** The pool's shared cursor (every entry of a table belongs to one pool). */
  private readonly poolSlot: number
  private readonly slots: Int32Array
  private readonly weights: Int32Array

  constructor (table: readonly UpstreamEntry[], state: BalancerState) {
    this.state = state
    this.poolSlot = table.length > 0 ? table[0].poolSlot : 0
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    this.weights = Int32Array.from(table, (entry) => Math.max(1, Math.floor(entry.weight)))
  }

  pick (ctx: PickContext): number {
    const count = this.slots.length
    if (count === 0) return -1
    let index = this.state.nextCursor(this.poolSlot) % count
    let best = -1
    let bestActive = 0
    let bestWeight = 1
    for (let probe = 0; probe < count; probe++) {
      const slot = this.slots[index]
      if (ctx.tried[index] === 0 && this.state.isAvailable(slot)) {
        const active = this.state.upstream(slot, U_ACTIVE_REQUESTS)
        const weight = this.weights[index]
        // active/weight < bestActive/bestWeight without dividing; both sides
        // stay below 2^41, exact in a double. Strictly less: the first of
        // equals from the rotating start wins.
        if (best === -1 || active * bestWeight < bestActive * weight) {
          best = index
          bestActive = active
          bestWeight = weight
        }
      }
      if (++index === count) index = 0
    }
    return best
  }
}
