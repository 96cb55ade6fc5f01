/**
 * Request coalescing across threads: a small shared table in which the first
 * thread to miss on a key claims its fill, so the others can wait for the
 * entry (or forward without storing) instead of all asking the upstream.
 *
 * Each slot is one int64 word, so a claim is a single compareExchange with
 * nothing half-written for another thread to see:
 *
 *    63 62        49 48       42 41                                 0
 *   +--+------------+-----------+------------------------------------+
 *   |0 | tag (14)   | owner (7) |  expiresAtMs (42 bits, until 2109)  |    0 = free
 *   +--+------------+-----------+------------------------------------+
 *
 * owner: 0 = the primary (sequential mode), workerSlot + 1 for a worker. It
 * is there so that the primary can free, the moment it sees a worker exit,
 * every claim that worker held (releaseFillsOf): a dead filler never
 * releases, and without the owner its waiters would sit until the claim
 * expires (responseMs + 1 s). The tag shrank from 21 to 14 bits to make room:
 * a false match also needs the same home slot (1 in 1024), so two live keys
 * share a claim about once in 2^23 pairs, and then one only waits needlessly.
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
const OWNER_BITS = 7n
const OWNER_MASK = (1n << OWNER_BITS) - 1n
const TAG_SHIFT = EXPIRY_BITS + OWNER_BITS
const MAX_EXPIRY_MS = 2 ** 42 - 1
const CLAIM_ROUNDS = 3

/** The owner id of a thread's claims and cache lock: 0 for the primary (or a worker without a slot), workerSlot + 1 for a worker. */
export function ownerOfWorkerSlot (workerSlot: number): number {
  return workerSlot < 0 ? 0 : workerSlot + 1
}

/** Largest owner id a claim can carry (MAX_WORKER_SLOTS + 1 must fit). */
export const MAX_CLAIM_OWNER = Number(OWNER_MASK)

/** The 14-bit tag of a key hash's high word (never 0, so a claim word is never the free word). */
export function claimTag (hashHi: number): number {
  return ((hashHi >>> 18) | 1) & 0x3fff
}

/** One claim word (exported for tests and for the diagram above to be checked). */
export function packClaim (tag: number, owner: number, expiresAtMs: number): bigint {
  return (BigInt(tag & 0x3fff) << TAG_SHIFT) | ((BigInt(owner) & OWNER_MASK) << EXPIRY_BITS) | (BigInt(expiresAtMs) & EXPIRY_MASK)
}

export function claimTagOf (word: bigint): number { return Number(word >> TAG_SHIFT) }
export function claimOwnerOf (word: bigint): number { return Number((word >> EXPIRY_BITS) & OWNER_MASK) }
export function claimExpiresAt (word: bigint): number { return Number(word & EXPIRY_MASK) }

/** true: the caller fills the key; false: another thread holds an unexpired claim on it. */
export function claimFill (fills: BigInt64Array, tag: number, owner: number, hashLo: number, nowMs: number, ttlMs: number): boolean {
  const home = hashLo & (FILL_SLOTS - 1)
  const expires = Math.min(Math.max(0, Math.floor(nowMs + ttlMs)), MAX_EXPIRY_MS)
  const mine = packClaim(tag, owner, expires)
  for (let round = 0; round < CLAIM_ROUNDS; round++) {
    let free = -1
    let freeWord = 0n
    for (let p = 0; p < FILL_PROBE; p++) {
      const slot = (home + p) & (FILL_SLOTS - 1)
      const word = Atomics.load(fills, slot)
      if (word !== 0n && Number(word & EXPIRY_MASK) > nowMs) {
        if (Number(word >> TAG_SHIFT) === tag) return false
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

/**
 * Drop the caller's claim on the key: the first slot carrying its tag and
 * owner. Matching the owner too keeps a filler whose claim expired and was
 * taken by another thread from freeing that thread's claim.
 */
export function releaseFill (fills: BigInt64Array, tag: number, owner: number, hashLo: number): void {
  const home = hashLo & (FILL_SLOTS - 1)
  for (let p = 0; p < FILL_PROBE; p++) {
    const slot = (home + p) & (FILL_SLOTS - 1)
    const word = Atomics.load(fills, slot)
    if (word !== 0n && Number(word >> TAG_SHIFT) === tag && claimOwnerOf(word) === owner) {
      Atomics.compareExchange(fills, slot, word, 0n)
      return
    }
  }
}

/**
 * Free every claim held by `owner`, expired or not (the primary, once that
 * worker has exited: nothing of it runs any more, so none of these is in
 * use). compareExchange per slot: a live thread may be taking an expired one
 * over at the same moment, and its claim must stay. Returns how many went.
 */
export function releaseFillsOf (fills: BigInt64Array, owner: number): number {
  let released = 0
  for (let slot = 0; slot < FILL_SLOTS; slot++) {
    const word = Atomics.load(fills, slot)
    if (word === 0n || claimOwnerOf(word) !== owner) continue
    if (Atomics.compareExchange(fills, slot, word, 0n) === word) released++
  }
  return released
}
