/**
 * Every offset into the shared cache buffer, named in one place (the cache's
 * own SharedArrayBuffer, separate from src/shared/layout's state buffer:
 * its size follows config.cache.maxBytes). Only src/cache/*.ts index it.
 *
 *   +-------------------------------------+  0
 *   | control     CTL_INTS x int32        |  lock, ring cursors, id/generation counters, seed, stats
 *   +-------------------------------------+  FILL_OFFSET (bytes, 8-aligned)
 *   | fill claims FILL_SLOTS x int64      |  [0 | tag:14 | owner:7 | expiresAtMs:42] per slot, 0 = free
 *   +-------------------------------------+  indexOffset
 *   | index       slots x INDEX_INTS int32|  KEY_HI | KEY_LO | OFFSET | ID   (linear probing)
 *   +-------------------------------------+  refOffset
 *   | ref bits    slots x uint8           |  1 = hit since the ring hand last passed (CLOCK)
 *   +-------------------------------------+  arenaOffset (8-aligned)
 *   | arena       arenaBytes              |  the ring of records, see below
 *   +-------------------------------------+
 *
 * A record in the arena (8-aligned, fields in bytes from the record start):
 *
 *    0 ID        int32  entry id, the seqlock word: 0 = dead; written last, cleared first
 *    4 SIZE      int32  record bytes, header included, multiple of 8
 *    8 KIND      int32  KIND_ENTRY | KIND_MARKER | KIND_PAD
 *   12 KEY_HI    int32  the key's hash (finds the index slot on eviction)
 *   16 KEY_LO    int32
 *   20 KEY_LEN   int32  latin1 bytes of the key
 *   24 STATUS    int32
 *   28 AGE_SEC   int32  initial age (RFC 9111 §4.2.3 corrected_initial_age)
 *   32 ETAG_LEN  int32  -1 = none
 *   36 LM_LEN    int32  Last-Modified, -1 = none
 *   40 VARY_LEN  int32  Vary names (lower case, joined by ','), -1 = none
 *   44 GEN       int32  marker: the generation its variants' keys carry
 *   48 HEAD_LEN  int32
 *   52 BODY_LEN  int32
 *   56 HEAD_AT   int32  where the head starts, from the record start
 *   60 FLAGS     int32  F_NEVER_STALE: never served stale (RFC 9111 §4.2.4)
 *   64 STORED_AT float64 ms
 *   72 DATE      float64 ms (the response's Date)
 *   80 FRESH_FOR float64 ms (freshness lifetime)
 *   88 SWR_SEC   int32  stale-while-revalidate seconds (RFC 5861 §3), -1 = none
 *   92 SIE_SEC   int32  stale-if-error seconds (RFC 5861 §4), -1 = none
 *   96 key | etag | last-modified | vary | gap 0..7 | head | body | padding to 8
 *
 * The gap puts the body at the same address mod 8 as the Buffer it was
 * copied from. V8 copies into and out of a SharedArrayBuffer with a relaxed
 * memcpy that goes word by word only when source and destination share their
 * alignment, and byte by byte otherwise: 7x slower (measured on Node 20:
 * 100 KB in 4.7 us aligned, 33 us not). Readers copy head + body to the same
 * phase in their fresh Buffer.
 */

// ---- control words (int32 index) -------------------------------------------------
export const C_MAGIC = 0 //          written once by allocate()
export const C_LOCK = 1 //           writer try-lock: 0 free, else lockToken(ms) of the holder
export const C_HEAD = 2 //           ring: next write offset in the arena (bytes)
export const C_TAIL = 3 //           ring: oldest record (bytes)
export const C_USED = 4 //           ring: bytes from tail to head, pads and dead records included
export const C_NEXT_ID = 5 //        last entry id handed out (never 0)
export const C_NEXT_GEN = 6 //       last Vary generation handed out
export const C_SEED = 7 //           hash seed (random, per buffer)
export const C_INDEX_SLOTS = 8 //    power of two
export const C_ARENA_BYTES = 9
export const C_MAX_ENTRY_BYTES = 10
export const C_HASH_BITS = 11 //     64 in production; tests force collisions with fewer
export const C_LOCK_LEASE_MS = 12
export const C_LIVE_RECORDS = 13 //  records reachable from the index (entries + markers)
export const C_LIVE_BYTES = 14 //    their bytes (mirrors H_CACHE_BYTES, reset-safe)
export const C_LIVE_ENTRIES = 15 //  responses among them (mirrors H_CACHE_ENTRIES)
export const C_SKIPPED_STORES = 16 // stores dropped because another thread held the lock
export const C_REFUSED_STORES = 17 // stores refused: too large, index full, non-latin1 key
export const C_EVICTIONS = 18 //     live records evicted by the ring
export const C_REINSERTIONS = 19 //  referenced records given a second chance
export const C_LOCK_TAKEOVERS = 20 // locks taken from a holder whose lease expired or that died (then reset)
export const C_LOCK_OWNER = 21 //    lockOwnerWord(token, owner) of the holder, 0 = none: see lockOwnerWord
export const C_WRITES = 22 //        writer sections begun + ended: odd while one runs (a reader's miss that overlapped one looks again)
export const CTL_INTS = 32

export const MAGIC = 0x53574343 // 'SWCC'

// ---- fill claims ------------------------------------------------------------------
export const FILL_OFFSET = CTL_INTS * 4
export const FILL_SLOTS = 1024
export const FILL_PROBE = 4

// ---- index slot words ---------------------------------------------------------------
export const I_KEY_HI = 0 //         0 = empty slot (hashes are forced non-zero)
export const I_KEY_LO = 1
export const I_OFFSET = 2 //         record offset in the arena
export const I_ID = 3 //             the record's id when the slot was written
export const INDEX_INTS = 4
/** Slots probed before a lookup gives up or a store is refused. */
export const MAX_PROBE = 64

// ---- record ----------------------------------------------------------------------------
export const R_ID = 0
export const R_SIZE = 4
export const R_KIND = 8
export const R_KEY_HI = 12
export const R_KEY_LO = 16
export const R_KEY_LEN = 20
export const R_STATUS = 24
export const R_AGE_SEC = 28
export const R_ETAG_LEN = 32
export const R_LM_LEN = 36
export const R_VARY_LEN = 40
export const R_GEN = 44
export const R_HEAD_LEN = 48
export const R_BODY_LEN = 52
export const R_HEAD_AT = 56
export const R_FLAGS = 60
export const R_STORED_AT = 64
export const R_DATE = 72
export const R_FRESH_FOR = 80
export const R_SWR_SEC = 88
export const R_SIE_SEC = 92
export const RECORD_HEADER_BYTES = 96

/** R_FLAGS bits. */
export const F_NEVER_STALE = 1

export const KIND_ENTRY = 1
export const KIND_MARKER = 2
export const KIND_PAD = 3

/** Longest key stored (host + target); longer URLs are not cached. */
export const MAX_KEY_BYTES = 16 * 1024
/** Offsets are int32: the arena must stay below 2 GiB. */
export const MAX_ARENA_BYTES = 0x7ffffff8

export interface CacheBufferLayout {
  indexSlots: number
  arenaBytes: number
  indexOffset: number
  refOffset: number
  arenaOffset: number
  totalBytes: number
}

export function align8 (n: number): number {
  return (n + 7) & ~7
}

export function cacheBufferLayout (indexSlots: number, arenaBytes: number): CacheBufferLayout {
  const indexOffset = FILL_OFFSET + FILL_SLOTS * 8
  const refOffset = indexOffset + indexSlots * INDEX_INTS * 4
  const arenaOffset = align8(refOffset + indexSlots)
  return { indexSlots, arenaBytes, indexOffset, refOffset, arenaOffset, totalBytes: arenaOffset + arenaBytes }
}

/**
 * The lock word's value: the holder's wall-clock ms modulo 2^30, plus 1 so it
 * is never 0. It doubles as the lease start, so a thread that sees the lock
 * held can tell how long it has been held without a second word (a second
 * word would be read before the holder wrote it).
 */
export function lockToken (wallMs: number): number {
  return (wallMs % 0x40000000) + 1
}

/**
 * Who holds the lock, for the primary to free it the moment that worker dies
 * (rather than after the lease). Written by the holder right after its
 * compareExchange on C_LOCK took the lock, cleared before it frees C_LOCK.
 * Owners as for fill claims: 0 the primary, workerSlot + 1 a worker.
 *
 *    31 30                          7 6         0
 *   +--+-----------------------------+-----------+
 *   |0 | low 24 bits of the token    | owner (7) |
 *   +--+-----------------------------+-----------+
 *
 * Two words cannot change together, so the word also names the token it goes
 * with: between a thread's takeover of C_LOCK and its write of this word, the
 * word still names the previous (dead) holder, and the primary must not
 * mistake the new, live holder's lock for the dead one's. It trusts the word
 * only when its token bits match C_LOCK's.
 */
export function lockOwnerWord (token: number, owner: number): number {
  return ((token & 0xffffff) << 7) | (owner & 0x7f)
}

/**
 * How long ago `token` was taken, in ms, signed and wrap-safe (within ±2^29
 * ms, ~6 days). Negative is normal: a thread reads its clock, then finds the
 * lock taken a moment later by a thread that read the clock after it. Read as
 * unsigned, that lock would look ~12 days old and be stolen from a live holder.
 */
export function lockHeldMs (token: number, wallMs: number): number {
  const SPAN = 0x40000000
  const HALF = 0x20000000
  return ((((lockToken(wallMs) - token + HALF) % SPAN) + SPAN) % SPAN) - HALF
}
