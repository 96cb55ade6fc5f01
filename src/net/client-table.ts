/**
 * Connections open per client address, over every thread: what limits.maxConnectionsPerClient caps (nginx's
 * limit_conn, HAProxy's src_conn_cur). A fixed table in shared memory, CLIENT_TABLE_OFFSET, owned here:
 *
 *   word 0               hash seed (written once by the primary: seedClientTable)
 *   entry e, from word 1 | KEY | lane 0 | lane 1 | ... | lane MAX_WORKER_SLOTS - 1 |
 *
 * KEY is 0 while the entry was never used, else a client's tag (bit 30 set, bit 0 clear), with bit 0 set while
 * one thread re-tags the entry (the lock). Lane s counts that client's connections held by the thread in
 * worker slot s, written only by that thread (Atomics.add), and zeroed by the primary once the thread is gone
 * (releaseClientLanes), so a crashed worker's connections stop counting, as its holdings do. The client's
 * count is the sum of the lanes.
 *
 * Taking a connection (acquireClient), no thread ever waits for another:
 *  1. The client's entry is looked for in a window of PROBE consecutive entries from where its address
 *     hashes. Found: +1 on our lane, then KEY read again; the +1 counts only if KEY is still exactly the tag
 *     (not locked, not re-tagged), else it is taken back and we start over. Then the lanes are summed: over
 *     the limit, the +1 is taken back and the connection refused (counted first, so two threads at the edge
 *     cannot both pass).
 *  2. Not found: the first entry in the window never used, or whose lanes sum to 0, is re-tagged: lock its
 *     KEY (compare-exchange), sum its lanes again, and only if still 0 put +1 on our lane and store our tag
 *     (unlocking); otherwise restore its KEY. Whoever added to that entry before the lock is seen by that sum
 *     (the +1 comes before its KEY check, which came before our lock); whoever adds after it sees the lock
 *     and takes its +1 back. So an entry is never re-tagged under a connection that counts on it.
 *  3. Every entry of the window belongs to a client with connections open: the table is full there, and the
 *     connection is admitted uncounted (CLIENT_UNCOUNTED). So is one that could not settle in ATTEMPTS tries
 *     (heavy contention, or a lock left by a thread terminated inside those few instructions).
 * Two first connections of one new client on two threads at the same instant could each re-tag a different
 * entry; the client's connections are then counted in two places until one of them empties (the limit is
 * per entry). Releasing (releaseClient) is -1 on our lane of the entry taken.
 */
import type { SharedState } from '../shared/state'
import { CLIENT_ENTRY_INTS, CLIENT_TABLE_ENTRIES, CLIENT_TABLE_OFFSET, MAX_WORKER_SLOTS } from '../shared/layout'
import { hashAddress } from '../ratelimit/hash'
import { randomBytes } from 'node:crypto'

/** The connection goes over the client's limit: refuse it. */
export const CLIENT_REFUSED = -1
/** Admitted without being counted (no entry could be had): nothing to release. */
export const CLIENT_UNCOUNTED = -2

const PROBE = 16
const ATTEMPTS = 8
const MASK = CLIENT_TABLE_ENTRIES - 1
const LOCK = 1

const hashed = new Int32Array(2)

function entryBase (e: number): number {
  return CLIENT_TABLE_OFFSET + 1 + e * CLIENT_ENTRY_INTS
}

/** The client's count: its lanes summed. */
export function clientCount (state: SharedState, e: number): number {
  const i32 = state.i32
  const base = entryBase(e) + 1
  let n = 0
  for (let s = 0; s < MAX_WORKER_SLOTS; s++) n += Atomics.load(i32, base + s)
  return n
}

/** The primary, once: the seed the addresses are hashed with (so nobody can aim many at one window). */
export function seedClientTable (state: SharedState): void {
  Atomics.store(state.i32, CLIENT_TABLE_OFFSET, randomBytes(4).readInt32LE(0) | 1)
}

/**
 * Count one more connection of `address` on worker slot `slot`, unless it has `limit` already: the entry
 * held (give it to releaseClient), CLIENT_REFUSED, or CLIENT_UNCOUNTED.
 */
export function acquireClient (state: SharedState, slot: number, address: string, limit: number): number {
  const i32 = state.i32
  hashAddress(address, Atomics.load(i32, CLIENT_TABLE_OFFSET), hashed)
  const tag = (hashed[0] & 0x3ffffffe) | 0x40000000
  const home = hashed[1] & MASK
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    let found = -1
    let free = -1
    for (let j = 0; j < PROBE; j++) {
      const e = (home + j) & MASK
      const key = Atomics.load(i32, entryBase(e))
      if ((key & ~LOCK) === tag) { found = e; break }
      if (free === -1 && (key & LOCK) === 0 && (key === 0 || clientCount(state, e) === 0)) free = e
    }
    if (found !== -1) {
      const base = entryBase(found)
      if (Atomics.load(i32, base) !== tag) continue // being re-tagged: look again
      Atomics.add(i32, base + 1 + slot, 1)
      if (Atomics.load(i32, base) !== tag) { Atomics.sub(i32, base + 1 + slot, 1); continue }
      // counted, then compared: two threads at the limit's edge cannot both pass it
      if (clientCount(state, found) > limit) { Atomics.sub(i32, base + 1 + slot, 1); return CLIENT_REFUSED }
      return found
    }
    if (free === -1) return CLIENT_UNCOUNTED
    const base = entryBase(free)
    const key = Atomics.load(i32, base)
    if ((key & LOCK) !== 0 || Atomics.compareExchange(i32, base, key, key | LOCK) !== key) continue
    if (clientCount(state, free) !== 0) { Atomics.store(i32, base, key); continue }
    Atomics.add(i32, base + 1 + slot, 1)
    Atomics.store(i32, base, tag)
    return free
  }
  return CLIENT_UNCOUNTED
}

/** One connection fewer for the client of entry `e`, on the slot that counted it. */
export function releaseClient (state: SharedState, e: number, slot: number): void {
  Atomics.sub(state.i32, entryBase(e) + 1 + slot, 1)
}

/** The primary, when the thread of worker slot `slot` has gone: its connections went with it. */
export function releaseClientLanes (state: SharedState, slot: number): void {
  for (let e = 0; e < CLIENT_TABLE_ENTRIES; e++) Atomics.store(state.i32, entryBase(e) + 1 + slot, 0)
}
