/**
 * Request coalescing across threads: a small shared table in which the first
 * thread to miss on a key claims its fill, so the others can wait for the
 * entry (or forward without storing) instead of all asking the upstream.
 *
 * Each slot is one int64 word, so a claim is a single compareExchange with
 * nothing half-written for another thread to see:
 *
 *    63 62          42 41                                 0
 *   +--+-------------+------------------------------------+
 *   |0 | tag (21 bit)|  expiresAtMs (42 bits, until 2109)  |    0 = free
 *   +--+-------------+------------------------------------+
 *
 * Claims are advice, not locks: two keys whose tags and home slots agree
 * share a claim (one of them coalesces needlessly), and a full neighbourhood
 * grants the claim without recording it (no coalescing, never a refusal). An
 * expired claim (its filler died or gave up) is free. BigInt allocates a
 * little; this runs once per miss, not per hit.
 */
import { FILL_PROBE, FILL_SLOTS } from './layout'

const EXPIRY_BITS = 42n
const EXPIRY_MASK = (1n << EXPIRY_BITS) - 1n
const MAX_EXPIRY_MS = 2 ** 42 - 1
const CLAIM_ROUNDS = 3

/** The 21-bit tag of a key hash's high word (never 0). */
export function claimTag (hashHi: number): number {
  return ((hashHi >>> 11) | 1) & 0x1fffff
}

/** true: the caller fills the key; false: another thread holds an unexpired claim on it. */
export function claimFill (fills: BigInt64Array, tag: number, hashLo: number, nowMs: number, ttlMs: number): boolean {
  const home = hashLo & (FILL_SLOTS - 1)
  const expires = Math.min(Math.max(0, Math.floor(nowMs + ttlMs)), MAX_EXPIRY_MS)
  const mine = (BigInt(tag) << EXPIRY_BITS) | BigInt(expires)
  for (let round = 0; round < CLAIM_ROUNDS; round++) {
    let free = -1
    let freeWord = 0n
    for (let p = 0; p < FILL_PROBE; p++) {
      const slot = (home + p) & (FILL_SLOTS - 1)
      const word = Atomics.load(fills, slot)
      if (word !== 0n && Number(word & EXPIRY_MASK) > nowMs) {
        if (Number(word >> EXPIRY_BITS) === tag) return false
        continue
      }
      if (free < 0) { free = slot; freeWord = word }
    }
    if (free < 0) return true
    if (Atomics.compareExchange(fills, free, freeWord, mine) === freeWord) return true
  }
  // lost every race for the neighbourhood: almost surely to a claim on this key
  return false
}

/** Drop the claim on the key (the first slot carrying its tag). */
export function releaseFill (fills: BigInt64Array, tag: number, hashLo: number): void {
  const home = hashLo & (FILL_SLOTS - 1)
  for (let p = 0; p < FILL_PROBE; p++) {
    const slot = (home + p) & (FILL_SLOTS - 1)
    const word = Atomics.load(fills, slot)
    if (word !== 0n && Number(word >> EXPIRY_BITS) === tag) {
      Atomics.compareExchange(fills, slot, word, 0n)
      return
    }
  }
}
