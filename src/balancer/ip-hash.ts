/**
 * ip-hash: the same key (client IP, or the configured header/cookie value)
 * goes to the same upstream while the table and its health stay the same.
 *
 * hash(key) indexes a weighted bucket table (each table index `weight` times,
 * gcd-reduced, interleaved), so shares follow weights. When the upstream found
 * is down or tried, the key is rehashed a few times, like nginx's ip_hash
 * (20 tries, then round robin): a down upstream's keys spread over the others
 * in proportion to weight instead of all landing on its neighbour. Past the
 * tries, a linear probe onward from the first index settles it.
 *
 * Changing the number of upstreams remaps almost every key; use
 * consistent-hash when that matters (caches).
 */
import type { UpstreamEntry } from '../shared/state'
import { hashString, remix } from './hash'
import type { Balancer, PickContext, BalancerState } from './types'
import { reducedWeights, smoothWeightedSequence } from './weighted-round-robin'

/** Rehashes before the linear probe. */
const REHASH_ATTEMPTS = 8

export interface HashBalancerOptions {
  /** hashKey.source is 'ip': hash ctx.clientIp even if ctx.hashKey is set. */
  clientIpOnly?: boolean
}

export class IpHashBalancer implements Balancer {
  private readonly state: BalancerState
  private readonly slots: Int32Array
  private readonly buckets: Uint8Array
  private readonly clientIpOnly: boolean

  constructor (table: readonly UpstreamEntry[], state: BalancerState, options: HashBalancerOptions = {}) {
    this.state = state
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    // Any arrangement with the right counts would do for a uniform hash; the
    // smooth sequence is simply an interleaved one already written.
    this.buckets = smoothWeightedSequence(reducedWeights(table))
    this.clientIpOnly = options.clientIpOnly === true
  }

  pick (ctx: PickContext): number {
    const length = this.buckets.length
    if (length === 0) return -1
    const key = this.clientIpOnly || ctx.hashKey === '' ? ctx.clientIp : ctx.hashKey
    let hash = hashString(key)
    const home = this.buckets[hash % length]
    let index = home
    for (let attempt = 0; attempt < REHASH_ATTEMPTS; attempt++) {
      if (ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])) return index
      hash = remix(hash)
      index = this.buckets[hash % length]
    }
    const count = this.slots.length
    index = home
    for (let probe = 0; probe < count; probe++) {
      if (ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])) return index
      if (++index === count) index = 0
    }
    return -1
  }
}
