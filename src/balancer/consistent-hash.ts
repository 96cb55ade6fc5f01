/**
 * Consistent hashing on a ring of virtual nodes (Karger et al.; ketama's
 * layout): each upstream owns POINTS_PER_WEIGHT points per unit of weight at
 * hash("<address>-<n>"), a key goes to the owner of the first point at or
 * after hash(key), walking clockwise past upstreams that are down or tried.
 *
 *   ring (sorted uint32)   0 ........ p0 .... p1 ...... p2 ........ 2^32
 *   owners                             b       a         b
 *   key at h: first point >= h, else wrap to p0
 *
 * A point's position depends only on the upstream's address, never on its
 * table position or the other upstreams, so removing (or ejecting) one of N
 * upstreams moves only the keys it owned, ~1/N of them, to the next points
 * clockwise; every other key stays where it was.
 *
 * The ring is capped at MAX_RING_POINTS (256 KiB of hashes + 64 KiB of owners
 * per thread). Past the cap (sum of weights > 409) every upstream gets fewer
 * points per unit of weight, and then adding or removing an upstream changes
 * that count for all: points n < count are kept, so keys still move only to
 * or from the points added or dropped, but more than 1/N of them.
 */
import { SwitchyardError } from '../errors'
import type { UpstreamEntry } from '../shared/state'
import { hashString } from './hash'
import type { HashBalancerOptions } from './ip-hash'
import type { Balancer, PickContext, BalancerState } from './types'

/** ketama's 160 per server: the spread of shares shrinks as 1/sqrt(points). */
export const POINTS_PER_WEIGHT = 160
export const MAX_RING_POINTS = 1 << 16
/** Owner indexes are packed below the hash in one double while sorting; the table holds at most 64. */
const OWNER_RADIX = 64

export class ConsistentHashBalancer implements Balancer {
  private readonly state: BalancerState
  private readonly slots: Int32Array
  /** Point positions, ascending. */
  private readonly ringHashes: Uint32Array
  /** ringOwners[k] = table index owning ringHashes[k]. */
  private readonly ringOwners: Uint8Array
  private readonly clientIpOnly: boolean

  constructor (table: readonly UpstreamEntry[], state: BalancerState, options: HashBalancerOptions = {}) {
    // The schema allows 64 upstreams (MAX_UPSTREAMS); this guards the packing below.
    if (table.length > OWNER_RADIX) throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `consistent-hash supports at most ${OWNER_RADIX} upstreams`)
    this.state = state
    this.slots = Int32Array.from(table, (entry) => entry.slot)
    this.clientIpOnly = options.clientIpOnly === true
    // No gcd reduction here (unlike WRR): it would make one upstream's point
    // count depend on the others' weights and defeat minimal movement.
    const weights = table.map((entry) => Math.max(1, Math.floor(entry.weight)))
    let weightSum = 0
    for (const w of weights) weightSum += w
    const perWeight = Math.max(1, Math.min(POINTS_PER_WEIGHT, Math.floor(MAX_RING_POINTS / Math.max(1, weightSum))))
    // Sort (hash, owner) pairs as one number: hash * 64 + owner < 2^38, exact
    // in a double, and a Float64Array sorts numerically without a comparator.
    const packed = new Float64Array(weightSum * perWeight)
    let k = 0
    for (let i = 0; i < table.length; i++) {
      const points = weights[i] * perWeight
      for (let n = 0; n < points; n++) packed[k++] = hashString(`${table[i].address}-${n}`) * OWNER_RADIX + i
    }
    packed.sort()
    this.ringHashes = new Uint32Array(packed.length)
    this.ringOwners = new Uint8Array(packed.length)
    for (let p = 0; p < packed.length; p++) {
      const owner = packed[p] % OWNER_RADIX
      this.ringOwners[p] = owner
      this.ringHashes[p] = (packed[p] - owner) / OWNER_RADIX
    }
  }

  pick (ctx: PickContext): number {
    const hashes = this.ringHashes
    const total = hashes.length
    if (total === 0) return -1
    const key = this.clientIpOnly || ctx.hashKey === '' ? ctx.clientIp : ctx.hashKey
    const hash = hashString(key)
    // lower bound: the first point at or after the key's hash
    let low = 0
    let high = total
    while (low < high) {
      const mid = (low + high) >>> 1
      if (hashes[mid] < hash) low = mid + 1
      else high = mid
    }
    let position = low === total ? 0 : low
    // Walk clockwise. Each owner's availability is read once per pick (two
    // 32-bit masks remember owners already refused), and the walk stops as
    // soon as every upstream has been refused, so a pick with all upstreams
    // down costs O(points until each owner has been seen), not the ring.
    const count = this.slots.length
    let refusedLow = 0
    let refusedHigh = 0
    let refused = 0
    for (let step = 0; step < total; step++) {
      const index = this.ringOwners[position]
      const bit = 1 << (index & 31)
      const known = index < 32 ? refusedLow & bit : refusedHigh & bit
      if (known === 0) {
        if (ctx.tried[index] === 0 && this.state.isAvailable(this.slots[index])) return index
        if (index < 32) refusedLow |= bit
        else refusedHigh |= bit
        if (++refused === count) return -1
      }
      if (++position === total) position = 0
    }
    return -1
  }
}
