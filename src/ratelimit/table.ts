/**
 * The shared rate-limit table: fixed-size open addressing over
 * `state.rateTable`, one slot per client address, claimed and updated only
 * with Atomics, so every thread (the primary in sequential mode, each worker
 * otherwise) counts in the same place. The algorithms (fixed-window.ts,
 * sliding-window.ts, token-bucket.ts) own what the two state words of a slot
 * mean; this module owns finding and claiming the slot.
 *
 *   state.rateTable: tableSize slots of RATE_SLOT_INTS (4) int32
 *
 *   slot 0 (header)   | hash seed | (unused)  | (unused)          | (unused)          |
 *   slot n            | KEY_HI    | KEY_LO    | STATE_A           | STATE_B           |
 *
 *   KEY_HI, KEY_LO: the address hashed with (seed ^ hash of the parameters), see keySeed
 *
 *   fixed-window      STATE_A = [window tag | count]    STATE_B unused
 *   sliding-window    STATE_A = [window tag | count]    STATE_B = [window tag | previous window's count]
 *   token-bucket      STATE_A = theoretical arrival time, STATE_B = clock epoch of the last update
 *
 * Who writes: every thread that serves requests; nothing else. Slots are never
 * freed (a stale one is reused in place), so H_RATE_SLOTS_USED only grows.
 *
 * Claiming a slot (two key words, no locks). KEY_HI is the ownership word: a
 * slot belongs to the thread whose compareExchange put its hash there; that
 * thread then writes KEY_LO. KEY_LO = 0 means "being written": a reader whose
 * KEY_HI matches takes such a slot as its own (its probe position and 32 bits
 * still identify it; a different address with the same 32 bits would have to
 * arrive in those few nanoseconds). So threads racing to claim the same new
 * address all land on the one slot the winner took, and no thread ever waits
 * for another. Taking over a slot from another key first clears its KEY_LO
 * (the old owner still matches on KEY_HI alone until the takeover lands).
 *
 * ---- FULL-TABLE POLICY (README) --------------------------------------------
 * A lookup probes at most 16 consecutive slots, starting where the address
 * hashes.
 *  1. A slot holding the address: count there.
 *  2. Otherwise the first slot that is unused, or whose key has been idle since
 *     before the current window (its count is zero now), is claimed and the
 *     newcomer starts from zero.
 *  3. Otherwise all 16 belong to clients active in this window: the table is
 *     full there. H_RATE_TABLE_FULL is incremented, and the newcomer takes over
 *     the probed slot with the smallest count (fewest requests this window, or
 *     the fullest token bucket), incrementing H_RATE_EVICTIONS, and INHERITS
 *     that count instead of starting from zero. The evicted client, when it
 *     returns, goes through 2 and 3 again in its own 16 slots; counts only grow
 *     within a window, so unless an unused slot is left there it inherits at
 *     least what it had.
 * So eviction never resets a count: a flood from one address stays limited (at
 * most one fresh quota per unused slot left in its 16-slot range while the table
 * fills, and none once it is full; the seeded hash keeps anyone from aiming at
 * a range), and under overload the limiter only gets stricter: clients in a
 * saturated range share counters (like a count-min sketch) and may be refused
 * before reaching their own limit. Size `tableSize` well above the number of
 * clients active in one window (x2), and watch H_RATE_TABLE_FULL and
 * H_RATE_EVICTIONS. Nothing ever blocks: every
 * compareExchange loop is bounded, and a check that cannot settle (pathological
 * contention) refuses the request rather than spin.
 * ------------------------------------------------------------------------------
 */
import { randomBytes } from 'node:crypto'
import type { RateLimitConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import { H_RATE_EVICTIONS, H_RATE_SLOTS_USED, H_RATE_TABLE_FULL, RATE_SLOT_INTS } from '../shared/layout'
import { SwitchyardError } from '../errors'
import { RateDecision, type RateLimiter } from './decision'
import { hashAddress } from './hash'
import { rateLimitHeaders } from './headers'

// ---- slot words (offsets inside a slot) --------------------------------------
export const S_KEY_HI = 0
export const S_KEY_LO = 1
export const S_STATE_A = 2
export const S_STATE_B = 3
/** Header slot word holding the hash seed (written once, by the first limiter created). */
const T_SEED = 0

/**
 * Slots probed per lookup. Linear probing clusters: with 8, a table at a quarter of
 * its size already saw an 8-slot run fill now and then (measured: ~4% of runs of 2,000
 * addresses in 8,192 slots); 16 makes that practically never happen below half full.
 */
export const PROBE_SLOTS = 16
/** Whole lookups retried when a claim loses a race. */
const CLAIM_ROUNDS = 3
/** compareExchange attempts on a slot's state before giving up (and refusing). */
export const CAS_ATTEMPTS = 32

export abstract class SlotTable implements RateLimiter {
  readonly config: RateLimitConfig
  /** state.rateTable: the slots. */
  protected readonly table: Int32Array
  /** state.i32: for the header counters. */
  private readonly shared: Int32Array
  private readonly mask: number
  private readonly seed: number
  /** [KEY_HI, KEY_LO] of the address being checked. */
  private readonly key = new Int32Array(2)

  /** `salt` gives a second family of slots in the same table (the cluster's leases, src/cluster/lease-slots.ts). */
  constructor (config: RateLimitConfig, state: SharedState, salt = 0) {
    const slots = state.rateTableSlots
    if (slots < 2 || (slots & (slots - 1)) !== 0) {
      throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `rate-limit table has ${slots} slots: needs a power of two (allocate the shared state with rateLimit.tableSize)`)
    }
    if (slots !== config.tableSize) {
      throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `rateLimit.tableSize is ${config.tableSize} but the shared state holds ${slots} slots`)
    }
    this.config = config
    this.table = state.rateTable
    this.shared = state.i32
    this.mask = slots - 1
    // The parameters are part of the seed: a reload that changes them (and so
    // what the state words mean) starts every client in a fresh slot instead of
    // reading old words with a new layout. Old slots look stale and are reused.
    this.seed = (keySeed(config, state.rateTable) ^ salt) | 1
  }

  newDecision (): RateDecision {
    return new RateDecision()
  }

  headers (decision: RateDecision): string {
    return rateLimitHeaders(decision, this.config)
  }

  check (clientIp: string, nowMs: number, out: RateDecision): boolean {
    this.prepare(nowMs)
    hashAddress(clientIp, this.seed, this.key)
    const base = this.locate()
    if (base < 0) return this.refuse(nowMs, out)
    return this.consume(base, nowMs, out)
  }

  /** The base index of `clientIp`'s slot (claimed if needed), -1 if none; for a subclass's writers. */
  protected slotOf (clientIp: string, nowMs: number): number {
    this.prepare(nowMs)
    hashAddress(clientIp, this.seed, this.key)
    return this.locate()
  }

  // ---- per algorithm ----------------------------------------------------------
  /** Work out this check's window / clock values (fields on the instance: no allocation). */
  protected abstract prepare (nowMs: number): void
  /** Count one request in the slot at `base` and fill `out`. */
  protected abstract consume (base: number, nowMs: number, out: RateDecision): boolean
  /** Refuse without a slot (claims kept losing races): fill `out` as a refusal. */
  protected abstract refuse (nowMs: number, out: RateDecision): boolean
  /** The slot's state says nothing about the current window: another key may reuse it. */
  protected abstract isStale (base: number): boolean
  /** How much of its quota the slot has used now (the smallest is evicted). */
  protected abstract usage (base: number): number

  // ---- lookup -----------------------------------------------------------------
  /** The base index of this address's slot, claiming one if needed; -1 if none could be had. */
  private locate (): number {
    const table = this.table
    const keyHi = this.key[0]
    const keyLo = this.key[1]
    const mask = this.mask
    const start = keyLo & mask
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      let pending = -1
      let free = -1
      let stale = -1
      let staleHi = 0
      let victim = -1
      let victimHi = 0
      let victimUsage = Infinity
      for (let i = 0; i < PROBE_SLOTS; i++) {
        const slot = (start + i) & mask
        if (slot === 0) continue // the header slot
        const base = slot * RATE_SLOT_INTS
        const hi = Atomics.load(table, base + S_KEY_HI)
        // Claims take the first usable probe and slots never become empty again,
        // so nothing of ours lies past an empty one.
        if (hi === 0) { free = base; break }
        if (hi === keyHi) {
          const lo = Atomics.load(table, base + S_KEY_LO)
          if (lo === keyLo) return base
          if (lo === 0 && pending < 0) pending = base
          continue
        }
        if (stale >= 0) continue
        // A slot claimed a moment ago whose owner has not counted yet has both state words
        // at 0: it belongs to a live client, so it is never "stale" (taking it over would
        // hand the new owner's count to us and send the owner to a fresh slot).
        if (!justClaimed(table, base) && this.isStale(base)) { stale = base; staleHi = hi; continue }
        const used = this.usage(base)
        if (used < victimUsage) { victimUsage = used; victim = base; victimHi = hi }
      }
      if (pending >= 0) return pending
      if (stale >= 0) {
        if (this.claim(stale, staleHi, keyHi, keyLo)) return stale
      } else if (free >= 0) {
        if (this.claim(free, 0, keyHi, keyLo)) return free
      } else if (victim >= 0) {
        if (this.claim(victim, victimHi, keyHi, keyLo)) {
          Atomics.add(this.shared, H_RATE_TABLE_FULL, 1)
          Atomics.add(this.shared, H_RATE_EVICTIONS, 1)
          return victim
        }
      } else {
        break // every probe holds a half-written key: nothing to take
      }
    }
    Atomics.add(this.shared, H_RATE_TABLE_FULL, 1)
    return -1
  }

  /**
   * Make the slot at `base` ours if its KEY_HI is still `oldHi`. True when the
   * slot now belongs to this address (claimed here, or by a thread checking the
   * same address at the same moment).
   */
  private claim (base: number, oldHi: number, keyHi: number, keyLo: number): boolean {
    const table = this.table
    if (oldHi !== 0) {
      // Taking over from another key: mark KEY_LO as being written first, so
      // nobody reads our KEY_HI with the old KEY_LO as a different address.
      const oldLo = Atomics.load(table, base + S_KEY_LO)
      if (Atomics.load(table, base + S_KEY_HI) !== oldHi) return false
      if (oldLo !== 0 && Atomics.compareExchange(table, base + S_KEY_LO, oldLo, 0) !== oldLo) return false
    }
    const seen = Atomics.compareExchange(table, base + S_KEY_HI, oldHi, keyHi)
    if (seen !== oldHi) return seen === keyHi
    // A thread that lost a takeover of this slot a moment ago may still set
    // KEY_LO from 0; ours wins because we own KEY_HI.
    if (Atomics.compareExchange(table, base + S_KEY_LO, 0, keyLo) !== 0) Atomics.store(table, base + S_KEY_LO, keyLo)
    if (oldHi === 0) Atomics.add(this.shared, H_RATE_SLOTS_USED, 1)
    return true
  }
}

/** Claimed but not yet counted: window words are never 0 once counted (tags run from 1). */
function justClaimed (table: Int32Array, base: number): boolean {
  return Atomics.load(table, base + S_STATE_A) === 0 && Atomics.load(table, base + S_STATE_B) === 0
}

/** The seed addresses are hashed with under `config` in `rateTable`. */
export function keySeed (config: RateLimitConfig, rateTable: Int32Array): number {
  return (sharedSeed(rateTable) ^ parametersHash(config)) | 1
}

/** FNV-1a of what decides the meaning of a slot's state words. */
function parametersHash (config: RateLimitConfig): number {
  const text = `${config.algorithm}/${config.maxRequests}/${config.windowMs}/${config.burst ?? ''}`
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h
}

/** The table's hash seed: random, chosen by whichever thread gets there first. */
function sharedSeed (table: Int32Array): number {
  const current = Atomics.load(table, T_SEED)
  if (current !== 0) return current
  const proposed = randomBytes(4).readInt32LE(0) | 1
  const seen = Atomics.compareExchange(table, T_SEED, 0, proposed)
  return seen === 0 ? proposed : seen
}
