/**
 * The shared response cache: one copy of each entry for every thread, in one
 * SharedArrayBuffer (layout and record format in ./layout, the index in
 * ./index-table, fill claims in ./fill-claims). HTTP semantics live in
 * ./policy; this module only keeps bytes.
 *
 * ---- Storage ------------------------------------------------------------------
 * The arena is a log-structured ring. New records are appended at HEAD; room
 * is made by retiring the record at TAIL, the oldest. A record that was hit
 * since the hand last passed (its index slot's ref bit) gets a second chance
 * instead: it is moved to HEAD (in place when the ring is exactly full) with
 * the bit cleared, at most REINSERT_BUDGET times per store. That is CLOCK, an
 * LRU approximation, over a FIFO of bytes. Records never straddle the end of
 * the arena (a pad record fills the gap), so the arena bounds what is held:
 * never more than maxBytes of records, metadata included. Records replaced or
 * purged stay in the ring as dead bytes until the tail reaches them.
 *
 * ---- Concurrency -----------------------------------------------------------
 * Writers (store, remove, and the eviction they do) take one lock word
 * with compareExchange (./write-lock); a thread that finds it held spins for
 * at most the time its caller allows (the request path: half a millisecond,
 * then it retries on a later turn of its loop, src/proxy/cache-path.ts
 * commit), never Atomics.wait. Readers take
 * no lock: a record's first word is its id, a seqlock. A reader checks the id
 * (the index slot's copy) before reading, copies everything out, fences and
 * checks again; any change means a miss, which find() does not take at its
 * word while a writer was at work (a slot repointed under the reader is read
 * again, and a miss that overlapped a writer's section looks again once it
 * ends: C_WRITES), so replacing an entry never reads as its absence. A writer clears the id of a record
 * it evicts or moves, fences, and only then overwrites those bytes; it writes
 * a new record's id last, after a fence. So a reader either copies a record
 * that nobody touched meanwhile, or misses. Ids come from a counter through a
 * seeded bijection: never 0, never repeated within 2^32 records, and not
 * predictable, so a body cannot forge the id of the record it overwrote (ABA).
 * Keys are verified against the record's stored key bytes: hash collisions
 * and torn index slots cost probes, never a wrong URL.
 *
 * JavaScript has no fence. fence() is a SeqCst store to a word only this
 * instance uses, then a SeqCst load: V8 emits xchg + mov on x64 and
 * stlr + ldar on arm64, so plain loads/stores before it complete before any
 * access after it (release on the store, store->load order for stlr/ldar,
 * acquire on the load).
 *
 * A thread terminated inside the write lock (worker.terminate runs no
 * finally) would hold it forever. The holder records itself next to the lock
 * (C_LOCK_OWNER), so the primary, when it sees that worker exit, takes the
 * lock over at once and resets the whole cache (its state is unknown):
 * recoverLockOf. As a fallback (a holder killed before it wrote its owner
 * word), the lock word is the holder's clock, and a lock older than the lease
 * is taken over by whichever thread next wants it, with the same reset. The
 * critical section is synchronous and bounded, so a live holder never comes
 * near the lease.
 *
 * ---- Ownership ------------------------------------------------------------
 * Each instance has an owner id (setOwner): 0 for the primary and sequential
 * mode, workerSlot + 1 for a worker. Fill claims and the lock carry it, so
 * what a dead worker held can be freed by the primary without waiting for
 * expiry or the lease (releaseFillsOf, recoverLockOf).
 */
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { SharedState } from '../shared/state'
import { H_CACHE_BYTES, H_CACHE_ENTRIES, H_CACHE_HITS, H_CACHE_MISSES } from '../shared/layout'
import * as C from './layout'
import { CacheEntry, type CacheEntryInput } from './entry'
import { hashKey, isLatin1, variantKey, varyValues, type HeaderSource } from './key'
import { clearSlot, emptySlotFor, fillSlot, repointSlot, slotOfRecord } from './index-table'
import { claimFill, claimTag, releaseFill, releaseFillsOf, MAX_CLAIM_OWNER } from './fill-claims'
import { currentAgeMs } from './policy'
import { WriteLock, LOCK_BUSY, LOCK_TAKEN_OVER } from './write-lock'

export { CacheEntry }
export type { CacheEntryInput }

/** Sent to every thread (structured clone shares the buffer). Everything else is read from it. */
/** tryRemove() results. */
export const REMOVED = 1
export const ABSENT = 0
/** tryRemove() / tryStore(): the write lock stayed taken; try again later. */
export const BUSY = -1
/** tryStore() results (and BUSY). */
export const STORED = 1
export const REFUSED = 0

export interface SharedCacheInit {
  buffer: SharedArrayBuffer
}

export interface SharedCacheOptions {
  /** Index slots (rounded up to a power of two); default arena bytes / 256. Tests force a small index. */
  indexSlots?: number
  /** Bits of key hash kept (default 64); tests force full-hash collisions with fewer. */
  hashBits?: number
  /** A write lock held longer than this is presumed dead (default 5000 ms). */
  lockLeaseMs?: number
}

export interface CacheStoreStats {
  liveRecords: number
  liveEntries: number
  liveBytes: number
  skippedStores: number
  refusedStores: number
  evictions: number
  reinsertions: number
  lockTakeovers: number
}

/** Second chances given per store before the tail is evicted regardless. */
const REINSERT_BUDGET = 16
/** Reads of one index slot that a writer keeps repointing (see probe). */
const SLOT_READS = 8
/** How long find() waits for a writer section to end before it trusts a miss (a section is one record copy and its evictions). */
const WRITER_WAIT_MS = 1
const DEFAULT_LOCK_LEASE_MS = 5000
const MAX_MAKE_ROOM_STEPS = 1 << 24

export class SharedCacheStore {
  /** Largest head + body accepted: the configured limit, at most half the arena. */
  readonly maxEntryBytes: number
  private readonly state: SharedState
  private readonly ctl: Int32Array
  private readonly fills: BigInt64Array
  private readonly index: Int32Array
  private readonly refs: Uint8Array
  /** The arena as a Buffer (latin1Slice) and as a plain Uint8Array (set/subarray without Buffer#copy's ~0.7 µs of overhead). */
  private readonly arena: Buffer
  private readonly bytes: Uint8Array
  private readonly words: Int32Array
  private readonly floats: Float64Array
  private readonly arenaBytes: number
  private readonly mask: number
  /** Live records the index may hold (3/4 load). */
  private readonly capacity: number
  private readonly seed: number
  private readonly hashBits: number
  private readonly leaseMs: number
  private readonly hash = new Int32Array(2)
  /** This instance's own word for fence(): never contended. */
  private readonly fenceWord = new Int32Array(new SharedArrayBuffer(4))
  private readonly writeLock: WriteLock
  /** The C_WRITES value this instance set when it took the lock (odd). */
  private writes = 0
  /** Who this instance claims fills and takes the lock as (see Ownership above). */
  private ownerId = 0
  // the last marker read (find -> KIND_MARKER): its generation and names, kept by id
  private markerId = 0
  private markerGen = 0
  private markerNames: string[] = []

  static allocate (maxBytes: number, maxEntryBytes: number, options: SharedCacheOptions = {}): SharedCacheInit {
    const arenaBytes = Math.floor(Math.min(maxBytes, C.MAX_ARENA_BYTES) / 8) * 8
    if (!(arenaBytes >= 256)) throw new RangeError(`cache.maxBytes ${maxBytes}: at least 256 bytes`)
    let slots = 4
    const wanted = options.indexSlots ?? Math.ceil(arenaBytes / 256)
    while (slots < wanted) slots *= 2
    const layout = C.cacheBufferLayout(slots, arenaBytes)
    const buffer = new SharedArrayBuffer(layout.totalBytes)
    const ctl = new Int32Array(buffer, 0, C.CTL_INTS)
    ctl[C.C_SEED] = randomBytes(4).readInt32LE(0)
    ctl[C.C_INDEX_SLOTS] = slots
    ctl[C.C_ARENA_BYTES] = arenaBytes
    ctl[C.C_MAX_ENTRY_BYTES] = Math.max(0, Math.min(maxEntryBytes, arenaBytes >> 1))
    ctl[C.C_HASH_BITS] = Math.max(1, Math.min(64, options.hashBits ?? 64))
    ctl[C.C_LOCK_LEASE_MS] = options.lockLeaseMs ?? DEFAULT_LOCK_LEASE_MS
    Atomics.store(ctl, C.C_MAGIC, C.MAGIC)
    return { buffer }
  }

  constructor (init: SharedCacheInit, state: SharedState) {
    const buffer = init.buffer
    this.state = state
    this.ctl = new Int32Array(buffer, 0, C.CTL_INTS)
    if (Atomics.load(this.ctl, C.C_MAGIC) !== C.MAGIC) throw new Error('cache buffer is not initialised')
    const layout = C.cacheBufferLayout(this.ctl[C.C_INDEX_SLOTS], this.ctl[C.C_ARENA_BYTES])
    this.arenaBytes = layout.arenaBytes
    this.mask = layout.indexSlots - 1
    this.capacity = Math.max(1, (layout.indexSlots * 3) >> 2)
    this.maxEntryBytes = this.ctl[C.C_MAX_ENTRY_BYTES]
    this.seed = this.ctl[C.C_SEED]
    this.hashBits = this.ctl[C.C_HASH_BITS]
    this.leaseMs = this.ctl[C.C_LOCK_LEASE_MS]
    this.writeLock = new WriteLock(this.ctl, this.leaseMs)
    this.fills = new BigInt64Array(buffer, C.FILL_OFFSET, C.FILL_SLOTS)
    this.index = new Int32Array(buffer, layout.indexOffset, layout.indexSlots * C.INDEX_INTS)
    this.refs = new Uint8Array(buffer, layout.refOffset, layout.indexSlots)
    this.arena = Buffer.from(buffer, layout.arenaOffset, layout.arenaBytes)
    this.bytes = new Uint8Array(buffer, layout.arenaOffset, layout.arenaBytes)
    this.words = new Int32Array(buffer, layout.arenaOffset, layout.arenaBytes >> 2)
    this.floats = new Float64Array(buffer, layout.arenaOffset, layout.arenaBytes >> 3)
  }

  /**
   * Set the owner id this instance's fill claims and lock carry: 0 for the
   * primary (the default), workerSlot + 1 for a worker. A worker learns its
   * slot after its context is built, hence a setter.
   */
  setOwner (owner: number): void {
    if (!Number.isInteger(owner) || owner < 0 || owner > MAX_CLAIM_OWNER) throw new RangeError(`cache owner ${owner}: 0..${MAX_CLAIM_OWNER}`)
    this.ownerId = owner
  }

  get owner (): number { return this.ownerId }

  // ---- readers (any thread, lock-free) -----------------------------------------

  /**
   * Copy the entry stored under `key` into `out`; false when there is none
   * (then only out.varyNames may have changed). A key whose response varies holds a marker: `req` (the request's
   * headers) then picks the variant, and without it the lookup misses. Stale
   * entries are returned too, with out.fresh false, for revalidation. Counts
   * H_CACHE_HITS for a fresh entry, H_CACHE_MISSES otherwise, unless `count` is
   * false (the request path counts once per request, not per lookup).
   */
  lookup (key: string, nowMs: number, out: CacheEntry, req: HeaderSource | null = null, count = true): boolean {
    let kind = this.find(key, out)
    if (kind === C.KIND_MARKER) {
      const names = this.markerNames
      kind = req === null ? 0 : this.find(variantKey(key, this.markerGen, varyValues(names, req)), out)
      out.varyNames = names
    } else out.varyNames = null
    if (kind !== C.KIND_ENTRY) {
      if (count) Atomics.add(this.state.i32, H_CACHE_MISSES, 1)
      return false
    }
    out.currentAgeMs = currentAgeMs(out.initialAgeSec, out.storedAtMs, nowMs)
    out.fresh = out.freshForMs > out.currentAgeMs
    if (count) Atomics.add(this.state.i32, out.fresh ? H_CACHE_HITS : H_CACHE_MISSES, 1)
    return true
  }

  /**
   * Probe the index for `key`: KIND_ENTRY (copied into out), KIND_MARKER
   * (markerGen/Names set) or 0. A miss that overlapped a writer's section is
   * not trusted: replacing a key repoints its slot (offset, then id: two
   * words) and then retires the old record, so a reader in between finds
   * neither (probe() reads such a slot again, which covers most of it). It
   * looks once more after the writer is out (C_WRITES even and unchanged),
   * waiting at most WRITER_WAIT_MS, so a replaced entry reads as the old
   * version or the new one, not as nothing. C_WRITES is one word for the
   * whole store: a miss that overlapped a store of any key pays that one
   * extra probe (and the wait for that writer's section, a record copy).
   */
  private find (key: string, out: CacheEntry): number {
    if (key.length > C.MAX_KEY_BYTES) return 0
    const h = this.hash
    hashKey(key, this.seed, this.hashBits, h)
    const hi = h[0]
    const lo = h[1]
    const writes = Atomics.load(this.ctl, C.C_WRITES)
    const kind = this.probe(key, hi, lo, out)
    if (kind !== 0 || ((writes & 1) === 0 && Atomics.load(this.ctl, C.C_WRITES) === writes)) return kind
    return this.writerOut() ? this.probe(key, hi, lo, out) : 0 // a miss with a writer at work: once more, after it
  }

  /** Spin until no writer section runs (C_WRITES even), at most WRITER_WAIT_MS; false if one still does. */
  private writerOut (): boolean {
    const ctl = this.ctl
    if ((Atomics.load(ctl, C.C_WRITES) & 1) === 0) return true
    const deadline = performance.now() + WRITER_WAIT_MS
    for (let round = 1; ; round++) {
      if ((Atomics.load(ctl, C.C_WRITES) & 1) === 0) return true
      if ((round & 63) === 0 && performance.now() > deadline) return false
    }
  }

  private probe (key: string, hi: number, lo: number, out: CacheEntry): number {
    const index = this.index
    const mask = this.mask
    for (let p = 0; p < C.MAX_PROBE && p <= mask; p++) {
      const slot = (lo + p) & mask
      const base = slot * C.INDEX_INTS
      const slotHi = Atomics.load(index, base + C.I_KEY_HI)
      if (slotHi === 0) return 0
      if (slotHi !== hi || Atomics.load(index, base + C.I_KEY_LO) !== lo) continue
      let offset = Atomics.load(index, base + C.I_OFFSET)
      let id = Atomics.load(index, base + C.I_ID)
      for (let read = 1; ; read++) {
        let kind = this.readRecord(offset, id, key, out)
        // read half repointed (offset and id are two words, offset first) by a writer that stalls in
        // between (preempted, a pause): the record at the new offset is complete, its own id written last
        if (kind === 0) {
          const own = this.idAt(offset)
          if (own !== id && own !== 0) kind = this.readRecord(offset, own, key, out)
        }
        if (kind !== 0) {
          // CLOCK reference bit; a slot recycled meanwhile only flatters another entry
          if (Atomics.load(this.refs, slot) === 0) Atomics.store(this.refs, slot, 1)
          return kind
        }
        // repointed meanwhile (the key replaced, or its record moved by the ring): read the slot again
        const nextOffset = Atomics.load(index, base + C.I_OFFSET)
        const nextId = Atomics.load(index, base + C.I_ID)
        if ((nextOffset === offset && nextId === id) || read === SLOT_READS) break
        offset = nextOffset
        id = nextId
      }
    }
    return 0
  }

  /**
   * The seqlock read of the record (offset, id) if it holds `key`. Everything
   * between the two id checks may be torn by a writer recycling the bytes, so
   * every length is bounds-checked (garbage must not throw or allocate much)
   * and nothing reaches `out` before the second check passes.
   */
  /** The id a record at `offset` carries (0: none, or not a record's place). */
  private idAt (offset: number): number {
    if (offset < 0 || (offset & 7) !== 0 || offset > this.arenaBytes - C.RECORD_HEADER_BYTES) return 0
    return Atomics.load(this.words, offset >> 2)
  }

  private readRecord (offset: number, id: number, key: string, out: CacheEntry): number {
    if (id === 0 || offset < 0 || (offset & 7) !== 0 || offset > this.arenaBytes - C.RECORD_HEADER_BYTES) return 0
    const words = this.words
    const w = offset >> 2
    if (Atomics.load(words, w) !== id) return 0
    const size = words[w + (C.R_SIZE >> 2)]
    const kind = words[w + (C.R_KIND >> 2)]
    const keyLength = words[w + (C.R_KEY_LEN >> 2)]
    if (keyLength !== key.length || size > this.arenaBytes - offset) return 0
    const arena = this.arena
    const bytes = this.bytes
    let p = offset + C.RECORD_HEADER_BYTES
    for (let i = 0; i < keyLength; i++) if (bytes[p + i] !== key.charCodeAt(i)) return 0
    p += keyLength
    const etagLength = words[w + (C.R_ETAG_LEN >> 2)]
    const lmLength = words[w + (C.R_LM_LEN >> 2)]
    const varyLength = words[w + (C.R_VARY_LEN >> 2)]
    const headLength = words[w + (C.R_HEAD_LEN >> 2)]
    const bodyLength = words[w + (C.R_BODY_LEN >> 2)]
    if (etagLength < -1 || lmLength < -1 || varyLength < -1 || headLength < 0 || bodyLength < 0) return 0
    const etagAt = p
    const lmAt = etagAt + (etagLength > 0 ? etagLength : 0)
    const varyAt = lmAt + (lmLength > 0 ? lmLength : 0)
    const stringsEnd = varyAt + (varyLength > 0 ? varyLength : 0)
    const headAt = offset + words[w + (C.R_HEAD_AT >> 2)]
    if (headAt < stringsEnd || headAt + headLength + bodyLength > offset + size) return 0

    if (kind === C.KIND_MARKER) {
      const generation = words[w + (C.R_GEN >> 2)]
      const names = id === this.markerId ? this.markerNames : varyLength > 0 ? arena.latin1Slice(varyAt, varyAt + varyLength).split(',') : []
      this.fence()
      if (Atomics.load(words, w) !== id) return 0
      this.markerId = id
      this.markerGen = generation
      this.markerNames = names
      return C.KIND_MARKER
    }
    if (kind !== C.KIND_ENTRY || headLength + bodyLength > this.maxEntryBytes) return 0
    const etag = etagLength >= 0 ? arena.latin1Slice(etagAt, etagAt + etagLength) : null
    const lastModified = lmLength >= 0 ? arena.latin1Slice(lmAt, lmAt + lmLength) : null
    const status = words[w + (C.R_STATUS >> 2)]
    const initialAgeSec = words[w + (C.R_AGE_SEC >> 2)]
    const f = offset >> 3
    const storedAtMs = this.floats[f + (C.R_STORED_AT >> 3)]
    const responseDateMs = this.floats[f + (C.R_DATE >> 3)]
    const freshForMs = this.floats[f + (C.R_FRESH_FOR >> 3)]
    const flags = words[w + (C.R_FLAGS >> 2)]
    const swrSec = words[w + (C.R_SWR_SEC >> 2)]
    const sieSec = words[w + (C.R_SIE_SEC >> 2)]
    // one copy out of the arena for head and body together, at the arena's
    // phase mod 8 so V8 copies words, not bytes (see ./layout)
    const total = headLength + bodyLength
    const copy = Buffer.allocUnsafe(total + 7)
    const phase = (headAt - copy.byteOffset) & 7
    copy.set(bytes.subarray(headAt, headAt + total), phase)
    this.fence()
    if (Atomics.load(words, w) !== id) return 0
    out.status = status
    out.head = copy.subarray(phase, phase + headLength)
    out.body = copy.subarray(phase + headLength, phase + total)
    out.storedAtMs = storedAtMs
    out.responseDateMs = responseDateMs
    out.initialAgeSec = initialAgeSec
    out.freshForMs = freshForMs
    out.etag = etag
    out.lastModified = lastModified
    out.neverStale = (flags & C.F_NEVER_STALE) !== 0
    out.staleWhileRevalidateSec = swrSec
    out.staleIfErrorSec = sieSec
    return C.KIND_ENTRY
  }

  // ---- writers (one at a time, try-lock) ------------------------------------------

  /**
   * Store `entry` under `key` (a primary key, key.ts). With varyNames, a
   * marker naming them goes under `key` (kept if it already names the same
   * fields, so sibling variants survive) and the entry under the variant key
   * of entry.varyValues. false when the write lock stayed taken for
   * `spinMs` (0: one attempt; counted as a skipped store) or the entry is
   * refused: head + body over maxEntryBytes, Vary: *, a key over
   * MAX_KEY_BYTES or not latin1, or no index slot left on its probe run.
   */
  store (key: string, entry: CacheEntryInput, spinMs = 0): boolean {
    const result = this.tryStore(key, entry, spinMs)
    if (result === BUSY) this.countSkippedStore()
    return result === STORED
  }

  /** store() telling apart STORED, REFUSED and BUSY (the caller decides whether to retry; nothing is counted for BUSY). */
  tryStore (key: string, entry: CacheEntryInput, spinMs: number): number {
    const names = entry.varyNames !== null && entry.varyNames.length > 0 ? entry.varyNames : null
    if (entry.head.length + entry.body.length > this.maxEntryBytes ||
      (names !== null && (names.includes('*') || entry.varyValues === null))) { this.refuse(); return REFUSED }
    if (!this.lock(spinMs)) return BUSY
    try {
      if (names === null) return this.put(key, C.KIND_ENTRY, entry, '', 0) ? STORED : REFUSED
      const varyText = names.join(',')
      let generation = this.liveMarkerGeneration(key, varyText)
      if (generation === 0) {
        generation = this.nextGeneration()
        if (!this.put(key, C.KIND_MARKER, null, varyText, generation)) return REFUSED
      }
      return this.put(variantKey(key, generation, entry.varyValues as string), C.KIND_ENTRY, entry, '', 0) ? STORED : REFUSED
    } finally {
      this.unlock()
    }
  }

  /** A store given up because the write lock stayed taken (stats().skippedStores). */
  countSkippedStore (): void {
    Atomics.add(this.ctl, C.C_SKIPPED_STORES, 1)
  }

  /** Count a request's outcome (H_CACHE_HITS / H_CACHE_MISSES) in shared state. */
  countRequest (field: number): void {
    Atomics.add(this.state.i32, field, 1)
  }

  /**
   * Purge `key`. For a varying URL that is the marker: its generation dies
   * with it, so every variant becomes unreachable (their bytes age out of the
   * ring). false when nothing was stored under `key`, or the store was busy
   * (try again).
   */
  remove (key: string): boolean {
    return this.tryRemove(key) === REMOVED
  }

  /** Like remove(), telling apart REMOVED, ABSENT (nothing stored) and BUSY (the lock stayed taken for `spinMs`: try again). */
  tryRemove (key: string, spinMs = 0): number {
    if (!this.lock(spinMs)) return BUSY
    try {
      if (key.length > C.MAX_KEY_BYTES) return ABSENT
      hashKey(key, this.seed, this.hashBits, this.hash)
      const slot = this.slotOfKey(key, this.hash[0], this.hash[1])
      if (slot < 0) return ABSENT
      const offset = this.index[slot * C.INDEX_INTS + C.I_OFFSET]
      this.unlinkRecord(offset, slot)
      this.publish()
      return REMOVED
    } finally {
      this.unlock()
    }
  }

  /**
   * Claim the right to fill `key` (request coalescing). true: this thread
   * fetches; false: another thread holds an unexpired claim (until it calls
   * releaseFill or `ttlMs` passes).
   */
  tryClaimFill (key: string, nowMs: number, ttlMs: number): boolean {
    hashKey(key, this.seed, 64, this.hash)
    return claimFill(this.fills, claimTag(this.hash[0]), this.ownerId, this.hash[1], nowMs, ttlMs)
  }

  releaseFill (key: string): void {
    hashKey(key, this.seed, 64, this.hash)
    releaseFill(this.fills, claimTag(this.hash[0]), this.ownerId, this.hash[1])
  }

  // ---- a dead owner's holdings (the primary, after that worker's 'exit') --------

  /**
   * Free every fill claim `owner` holds, so requests waiting for those fills
   * stop waiting now (one of them claims the fill anew) instead of when the
   * claim expires. Only for an owner that can no longer run: a live one
   * would go on believing it fills. Returns the number of claims freed.
   */
  releaseFillsOf (owner: number): number {
    return releaseFillsOf(this.fills, owner)
  }

  /**
   * If `owner` (dead) holds the write lock, take it over, reset the cache
   * (whatever it was writing is half-written) and free the lock, as the lease
   * takeover would, only without waiting for the lease. true when it did.
   */
  recoverLockOf (owner: number): boolean {
    if (!this.writeLock.takeOverFrom(owner, this.ownerId)) return false
    this.beginWrites()
    this.reset()
    this.unlock()
    return true
  }

  stats (): CacheStoreStats {
    const c = this.ctl
    return {
      liveRecords: Atomics.load(c, C.C_LIVE_RECORDS),
      liveEntries: Atomics.load(c, C.C_LIVE_ENTRIES),
      liveBytes: Atomics.load(c, C.C_LIVE_BYTES),
      skippedStores: Atomics.load(c, C.C_SKIPPED_STORES) >>> 0,
      refusedStores: Atomics.load(c, C.C_REFUSED_STORES) >>> 0,
      evictions: Atomics.load(c, C.C_EVICTIONS) >>> 0,
      reinsertions: Atomics.load(c, C.C_REINSERTIONS) >>> 0,
      lockTakeovers: Atomics.load(c, C.C_LOCK_TAKEOVERS) >>> 0,
    }
  }

  // ---- under the write lock ------------------------------------------------------

  /** Append one record and point the key's index slot at it. */
  private put (key: string, kind: number, entry: CacheEntryInput | null, varyText: string, generation: number): boolean {
    if (key.length > C.MAX_KEY_BYTES || !isLatin1(key)) return this.refuse()
    const etag = entry === null ? null : entry.etag
    const lastModified = entry === null ? null : entry.lastModified
    const etagLength = etag === null ? -1 : etag.length
    const lmLength = lastModified === null ? -1 : lastModified.length
    const headLength = entry === null ? 0 : entry.head.length
    const bodyLength = entry === null ? 0 : entry.body.length
    const stringsEnd = C.RECORD_HEADER_BYTES + key.length + Math.max(0, etagLength) + Math.max(0, lmLength) + varyText.length
    // records start 8-aligned, so this gap puts the body at its source's phase mod 8 (see ./layout)
    const gap = entry === null ? 0 : (entry.body.byteOffset - (stringsEnd + headLength)) & 7
    const size = C.align8(stringsEnd + gap + headLength + bodyLength)
    if (size > this.arenaBytes >> 1) return this.refuse()
    const hash = this.hash
    hashKey(key, this.seed, this.hashBits, hash)
    const hi = hash[0]
    const lo = hash[1]

    const offset = this.makeRoom(size)
    if (offset < 0) return this.refuse()
    // the ids of everything evicted are cleared: now the bytes may change
    this.fence()
    const words = this.words
    const w = offset >> 2
    Atomics.store(words, w, 0)
    words[w + (C.R_SIZE >> 2)] = size
    words[w + (C.R_KIND >> 2)] = kind
    words[w + (C.R_KEY_HI >> 2)] = hi
    words[w + (C.R_KEY_LO >> 2)] = lo
    words[w + (C.R_KEY_LEN >> 2)] = key.length
    words[w + (C.R_STATUS >> 2)] = entry === null ? 0 : entry.status
    words[w + (C.R_AGE_SEC >> 2)] = entry === null ? 0 : entry.initialAgeSec
    words[w + (C.R_ETAG_LEN >> 2)] = etagLength
    words[w + (C.R_LM_LEN >> 2)] = lmLength
    words[w + (C.R_VARY_LEN >> 2)] = kind === C.KIND_MARKER ? varyText.length : -1
    words[w + (C.R_GEN >> 2)] = generation
    words[w + (C.R_HEAD_LEN >> 2)] = headLength
    words[w + (C.R_BODY_LEN >> 2)] = bodyLength
    words[w + (C.R_HEAD_AT >> 2)] = stringsEnd + gap
    words[w + (C.R_FLAGS >> 2)] = entry !== null && entry.neverStale === true ? C.F_NEVER_STALE : 0
    words[w + (C.R_SWR_SEC >> 2)] = entry === null ? -1 : entry.staleWhileRevalidateSec ?? -1
    words[w + (C.R_SIE_SEC >> 2)] = entry === null ? -1 : entry.staleIfErrorSec ?? -1
    const f = offset >> 3
    this.floats[f + (C.R_STORED_AT >> 3)] = entry === null ? 0 : entry.storedAtMs
    this.floats[f + (C.R_DATE >> 3)] = entry === null ? 0 : entry.responseDateMs
    this.floats[f + (C.R_FRESH_FOR >> 3)] = entry === null ? 0 : entry.freshForMs
    const bytes = this.bytes
    let p = writeLatin1(bytes, offset + C.RECORD_HEADER_BYTES, key)
    if (etag !== null) p = writeLatin1(bytes, p, etag)
    if (lastModified !== null) p = writeLatin1(bytes, p, lastModified)
    p = writeLatin1(bytes, p, varyText) + gap
    if (entry !== null) {
      bytes.set(entry.head, p)
      bytes.set(entry.body, p + headLength)
    }
    const id = this.nextId()
    this.fence()
    Atomics.store(words, w, id)
    let head = offset + size
    if (head === this.arenaBytes) head = 0
    Atomics.store(this.ctl, C.C_HEAD, head)
    Atomics.add(this.ctl, C.C_USED, size)

    const slot = this.slotOfKey(key, hi, lo)
    if (slot >= 0) {
      // replace: readers see the old record or the new one, then the old one dies
      const oldOffset = this.index[slot * C.INDEX_INTS + C.I_OFFSET]
      repointSlot(this.index, slot, offset, id)
      Atomics.store(this.refs, slot, 0)
      this.retire(oldOffset)
    } else {
      const free = emptySlotFor(this.index, this.mask, lo)
      if (free < 0) {
        Atomics.store(words, w, 0) // dead bytes in the ring until the tail passes
        return this.refuse()
      }
      fillSlot(this.index, this.refs, free, hi, lo, offset, id)
      Atomics.add(this.ctl, C.C_LIVE_RECORDS, 1)
    }
    Atomics.add(this.ctl, C.C_LIVE_BYTES, size)
    if (kind === C.KIND_ENTRY) Atomics.add(this.ctl, C.C_LIVE_ENTRIES, 1)
    this.publish()
    return true
  }

  /**
   * Free `need` contiguous bytes at the ring's head (and keep the index under
   * its load limit): retire tail records, giving referenced ones a second
   * chance. Returns the offset to write at, or -1.
   */
  private makeRoom (need: number): number {
    const ctl = this.ctl
    const words = this.words
    const arenaBytes = this.arenaBytes
    let head = Atomics.load(ctl, C.C_HEAD)
    let tail = Atomics.load(ctl, C.C_TAIL)
    let used = Atomics.load(ctl, C.C_USED)
    let budget = REINSERT_BUDGET
    let at = -1
    for (let step = 0; step < MAX_MAKE_ROOM_STEPS; step++) {
      if (used === 0) { head = 0; tail = 0 }
      const indexRoom = Atomics.load(ctl, C.C_LIVE_RECORDS) < this.capacity
      if (head > tail || used === 0) {
        // free: [head, end) and [0, tail)
        if (indexRoom) {
          if (arenaBytes - head >= need) { at = head; break }
          // a record never straddles the end: pad to it and wrap
          this.writePad(head, arenaBytes - head)
          used += arenaBytes - head
          head = 0
          continue
        }
      } else if (indexRoom && tail - head >= need) { at = head; break }
      if (used === 0) break
      // retire the record at the tail
      const w = tail >> 2
      const size = words[w + (C.R_SIZE >> 2)]
      if (size < 8 || (size & 7) !== 0 || size > arenaBytes - tail) {
        // a ring we cannot walk is a bug; start over rather than loop
        this.reset()
        head = 0; tail = 0; used = 0
        continue
      }
      const id = Atomics.load(words, w)
      if (id !== 0 && words[w + (C.R_KIND >> 2)] !== C.KIND_PAD) {
        const slot = slotOfRecord(this.index, this.mask, words[w + (C.R_KEY_HI >> 2)], words[w + (C.R_KEY_LO >> 2)], tail, id)
        if (slot >= 0 && indexRoom && budget > 0 && head <= tail && Atomics.load(this.refs, slot) === 1) {
          // second chance: move it to the head (a no-op move when the ring is exactly full)
          budget--
          Atomics.store(this.refs, slot, 0)
          Atomics.add(ctl, C.C_REINSERTIONS, 1)
          if (head !== tail) {
            Atomics.store(words, w, 0)
            this.fence()
            this.bytes.copyWithin(head, tail, tail + size)
            const movedId = this.nextId()
            this.fence()
            Atomics.store(words, head >> 2, movedId)
            repointSlot(this.index, slot, head, movedId)
          }
          head += size
          if (head === arenaBytes) head = 0
        } else {
          this.unlinkRecord(tail, slot)
          Atomics.add(ctl, C.C_EVICTIONS, 1)
          used -= size
        }
      } else used -= size
      tail += size
      if (tail === arenaBytes) tail = 0
    }
    Atomics.store(ctl, C.C_HEAD, head)
    Atomics.store(ctl, C.C_TAIL, tail)
    Atomics.store(ctl, C.C_USED, used)
    return at
  }

  /** Kill the live record at `offset` and empty its index slot (if it has one). */
  private unlinkRecord (offset: number, slot: number): void {
    this.retire(offset)
    if (slot >= 0) {
      clearSlot(this.index, this.refs, this.mask, slot)
      Atomics.sub(this.ctl, C.C_LIVE_RECORDS, 1)
    }
  }

  /** Clear a live record's id (readers miss from here on) and drop it from the live totals. */
  private retire (offset: number): void {
    const w = offset >> 2
    if (Atomics.load(this.words, w) === 0) return
    Atomics.store(this.words, w, 0)
    Atomics.sub(this.ctl, C.C_LIVE_BYTES, this.words[w + (C.R_SIZE >> 2)])
    if (this.words[w + (C.R_KIND >> 2)] === C.KIND_ENTRY) Atomics.sub(this.ctl, C.C_LIVE_ENTRIES, 1)
  }

  private writePad (offset: number, size: number): void {
    const w = offset >> 2
    Atomics.store(this.words, w, 0)
    this.words[w + (C.R_SIZE >> 2)] = size
    this.words[w + (C.R_KIND >> 2)] = C.KIND_PAD
  }

  /** The index slot of the live record stored under `key` (key bytes compared), or -1. */
  private slotOfKey (key: string, hi: number, lo: number): number {
    const index = this.index
    const words = this.words
    const bytes = this.bytes
    const mask = this.mask
    outer:
    for (let p = 0; p < C.MAX_PROBE && p <= mask; p++) {
      const slot = (lo + p) & mask
      const base = slot * C.INDEX_INTS
      const slotHi = index[base + C.I_KEY_HI]
      if (slotHi === 0) return -1
      if (slotHi !== hi || index[base + C.I_KEY_LO] !== lo) continue
      const offset = index[base + C.I_OFFSET]
      const w = offset >> 2
      if (words[w] !== index[base + C.I_ID] || words[w + (C.R_KEY_LEN >> 2)] !== key.length) continue
      const at = offset + C.RECORD_HEADER_BYTES
      for (let i = 0; i < key.length; i++) if (bytes[at + i] !== key.charCodeAt(i)) continue outer
      return slot
    }
    return -1
  }

  /** The generation of the live marker under `key` if it names exactly `varyText`, else 0. */
  private liveMarkerGeneration (key: string, varyText: string): number {
    hashKey(key, this.seed, this.hashBits, this.hash)
    const slot = this.slotOfKey(key, this.hash[0], this.hash[1])
    if (slot < 0) return 0
    const offset = this.index[slot * C.INDEX_INTS + C.I_OFFSET]
    const w = offset >> 2
    if (this.words[w + (C.R_KIND >> 2)] !== C.KIND_MARKER || this.words[w + (C.R_VARY_LEN >> 2)] !== varyText.length) return 0
    const at = offset + C.RECORD_HEADER_BYTES + key.length
    for (let i = 0; i < varyText.length; i++) if (this.bytes[at + i] !== varyText.charCodeAt(i)) return 0
    return this.words[w + (C.R_GEN >> 2)]
  }

  /** A fresh record id: a seeded bijection of a counter, never 0. */
  private nextId (): number {
    for (;;) {
      const n = Atomics.add(this.ctl, C.C_NEXT_ID, 1) + 1
      let h = n ^ this.seed
      h ^= h >>> 16
      h = Math.imul(h, 0x85ebca6b)
      h ^= h >>> 13
      h = Math.imul(h, 0xc2b2ae35)
      h ^= h >>> 16
      if (h !== 0) return h
    }
  }

  private nextGeneration (): number {
    const g = (Atomics.add(this.ctl, C.C_NEXT_GEN, 1) + 1) | 0
    return g === 0 ? this.nextGeneration() : g
  }

  private refuse (): boolean {
    Atomics.add(this.ctl, C.C_REFUSED_STORES, 1)
    return false
  }

  /** The state buffer's gauges mirror the store's own (stored, not added: exact even after a reset). */
  private publish (): void {
    this.state.storeHeader(H_CACHE_BYTES, Atomics.load(this.ctl, C.C_LIVE_BYTES))
    this.state.storeHeader(H_CACHE_ENTRIES, Atomics.load(this.ctl, C.C_LIVE_ENTRIES))
  }

  private fence (): void {
    Atomics.store(this.fenceWord, 0, 0)
    Atomics.load(this.fenceWord, 0)
  }

  /**
   * Take the write lock, spinning up to `spinMs`; a lock taken over from a dead holder resets the cache first.
   * Holding it, C_WRITES is odd (find() looks again after a miss that overlapped this).
   */
  private lock (spinMs = 0): boolean {
    const result = this.writeLock.acquireWithin(this.ownerId, spinMs)
    if (result === LOCK_BUSY) return false
    this.beginWrites()
    if (result === LOCK_TAKEN_OVER) this.reset()
    return true
  }

  /** Holding the lock: C_WRITES odd, and changed even when a dead holder left it odd. */
  private beginWrites (): void {
    const writes = Atomics.load(this.ctl, C.C_WRITES)
    this.writes = (writes + ((writes & 1) === 0 ? 1 : 2)) | 0
    Atomics.store(this.ctl, C.C_WRITES, this.writes)
  }

  private unlock (): void {
    // compareExchange: a holder whose lease was taken over must not end the new holder's section
    Atomics.compareExchange(this.ctl, C.C_WRITES, this.writes, (this.writes + 1) | 0)
    this.writeLock.release()
  }

  /** Empty the cache (under the lock). Zeroing the whole arena clears every id a reader might hold. */
  private reset (): void {
    this.index.fill(0)
    this.refs.fill(0)
    this.arena.fill(0)
    this.fence()
    const c = this.ctl
    Atomics.store(c, C.C_HEAD, 0)
    Atomics.store(c, C.C_TAIL, 0)
    Atomics.store(c, C.C_USED, 0)
    Atomics.store(c, C.C_LIVE_RECORDS, 0)
    Atomics.store(c, C.C_LIVE_BYTES, 0)
    Atomics.store(c, C.C_LIVE_ENTRIES, 0)
    this.publish()
  }
}

/** Latin1 bytes of `text` at `at` (short strings: a loop beats Buffer#write's call overhead); returns the end. */
function writeLatin1 (bytes: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i)
  return at + text.length
}
