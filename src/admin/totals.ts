/**
 * 64-bit totals from the 32-bit counters in shared memory.
 *
 * Counters in the shared buffer are Int32 cells that every thread bumps with
 * Atomics.add, so they wrap after 2^32 (see shared/layout). Exported counters
 * must be monotonic, so the primary samples them (every second, unref'd, and
 * before every scrape) and adds each delta taken mod 2^32 to a JS number,
 * which is exact up to 2^53. One wrap between two samples would need four
 * billion increments in a second, so the modular delta is always the true one.
 *
 *   shared cell (uint32)   last seen (uint32)   total (float64, exact < 2^53)
 *   0xFFFF_FFF0   ----->   0xFFFF_FFF0          4_294_967_280
 *   0x0000_0010   ----->   0x0000_0010          + ((0x10 - 0xFFFF_FFF0) >>> 0) = 4_294_967_312
 *
 * Identity: an upstream's block is reset when its slot is given to a newly
 * configured upstream, and a worker slot when a new thread claims it, so
 * totals are kept per address (upstreams) and per thread id (worker slots),
 * and a change of owner starts from zero rather than reading a reset as a
 * wrap. An address removed and re-added into the same slot between two
 * samples is the one case this cannot see; the admin reload endpoint samples
 * right before and after applying a config to keep that window closed.
 *
 * Process-wide totals are monotonic: an upstream removed by a reload takes its
 * per-address series with it, but what it counted moves to `retired` and stays
 * in every sum (upstreamAll); worker counters are summed over every thread
 * that ever held a slot (allWorkersTotal).
 */
import { upstreamKey } from '../routing/pools'
import * as L from '../shared/layout'
import type { SharedState, UpstreamEntry } from '../shared/state'

/** Header cells that are counters (the others are cursors or gauges). */
export const HEADER_COUNTERS: readonly number[] = [
  L.H_RATE_LIMITED, L.H_FIREWALL_BLOCKED, L.H_PROTOCOL_ERRORS, L.H_RATE_EVICTIONS,
  L.H_RATE_TABLE_FULL, L.H_WORKER_RESTARTS, L.H_CONNECTIONS_ACCEPTED,
  L.H_CACHE_HITS, L.H_CACHE_MISSES, L.H_STICKY_HITS,
]

/** Per-upstream cells that are counters. */
export const UPSTREAM_COUNTERS: readonly number[] = [
  L.U_REQUESTS, L.U_FAILURES, L.U_RETRIES, L.U_HEALTH_TRANSITIONS,
  L.U_STATUS_1XX, L.U_STATUS_1XX + 1, L.U_STATUS_1XX + 2, L.U_STATUS_1XX + 3, L.U_STATUS_1XX + 4,
  L.U_LATENCY_SUM_US,
  ...Array.from({ length: L.LATENCY_BOUNDS_MS.length + 1 }, (_, i) => L.U_LATENCY_BUCKETS + i),
  L.U_LOCAL_4XX, L.U_LOCAL_5XX,
  L.U_REQUEST_BYTES, L.U_REQUEST_BYTES_HI, L.U_RESPONSE_BYTES, L.U_RESPONSE_BYTES_HI,
]

/** Per-worker cells that are counters. */
export const WORKER_COUNTERS: readonly number[] = [
  L.W_REQUESTS,
  ...Array.from({ length: 10 }, (_, i) => L.W_RESPONSES + i),
  L.W_REQUEST_BYTES, L.W_REQUEST_BYTES_HI, L.W_RESPONSE_BYTES, L.W_RESPONSE_BYTES_HI,
  L.W_DURATION_SUM_US,
  ...Array.from({ length: L.LATENCY_BOUNDS_MS.length + 1 }, (_, i) => L.W_DURATION_BUCKETS + i),
]

const TWO_32 = 4294967296

/** A health or admin state as the sampler tracks it for "time in current state". */
function stateKey (state: SharedState, slot: number): number {
  return state.upstream(slot, L.U_HEALTHY) * 2 + (state.upstream(slot, L.U_ADMIN_STATE) === L.ADMIN_DRAINING ? 1 : 0)
}

class UpstreamTotals {
  slot: number
  /** Indexed by U_* field; only UPSTREAM_COUNTERS cells are used. */
  readonly last = new Uint32Array(L.UPSTREAM_INTS)
  readonly total = new Float64Array(L.UPSTREAM_INTS)
  /** stateKey at the last sample, and Date.now() when it last changed (or first seen). */
  stateKey = -1
  stateSinceMs = 0
  transitionsSeen = 0
  constructor (slot: number) { this.slot = slot }
}

class WorkerTotals {
  threadId = 0
  readonly last = new Uint32Array(L.WORKER_INTS)
  readonly total = new Float64Array(L.WORKER_INTS)
}

/** Modular difference of two uint32 readings. */
export function delta32 (current: number, last: number): number {
  return (current - last) >>> 0
}

export class CounterTotals {
  private readonly state: SharedState
  private readonly headerLast = new Uint32Array(L.HEADER_INTS)
  private readonly headerTotal = new Float64Array(L.HEADER_INTS)
  private readonly upstreams = new Map<string, UpstreamTotals>()
  /** What upstreams removed by a reload had counted (U_* fields), kept in process-wide sums. */
  private readonly retired = new Float64Array(L.UPSTREAM_INTS)
  private readonly workers: WorkerTotals[] = Array.from({ length: L.MAX_WORKER_SLOTS }, () => new WorkerTotals())
  /** W_* counters summed over every thread that ever held a slot (survives worker restarts). */
  private readonly allWorkers = new Float64Array(L.WORKER_INTS)
  private timer: NodeJS.Timeout | null = null

  constructor (state: SharedState) {
    this.state = state
  }

  /** Fold the current shared counters into the totals. `table` is the live upstream table. */
  sample (table: readonly UpstreamEntry[]): void {
    const state = this.state
    for (const field of HEADER_COUNTERS) {
      const current = state.header(field) >>> 0
      this.headerTotal[field] += delta32(current, this.headerLast[field])
      this.headerLast[field] = current
    }

    const present = new Set<string>()
    for (const entry of table) {
      const key = upstreamKey(entry) // an address in two pools is two upstreams
      present.add(key)
      let record = this.upstreams.get(key)
      if (record === undefined) {
        record = new UpstreamTotals(entry.slot)
        this.upstreams.set(key, record)
      } else if (record.slot !== entry.slot) {
        // removed and re-added between samples: its new block started from zero
        record.slot = entry.slot
        record.last.fill(0)
      }
      for (const field of UPSTREAM_COUNTERS) {
        const current = state.upstream(entry.slot, field) >>> 0
        record.total[field] += delta32(current, record.last[field])
        record.last[field] = current
      }
      // a change of health or draining, or transitions that flipped back within one interval
      const health = stateKey(state, entry.slot)
      const flipped = record.total[L.U_HEALTH_TRANSITIONS] !== record.transitionsSeen
      if (health !== record.stateKey || flipped) {
        record.stateKey = health
        record.stateSinceMs = Date.now()
        record.transitionsSeen = record.total[L.U_HEALTH_TRANSITIONS]
      }
    }
    for (const [address, record] of this.upstreams) {
      if (present.has(address)) continue
      for (const field of UPSTREAM_COUNTERS) this.retired[field] += record.total[field]
      this.upstreams.delete(address)
    }

    for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
      const record = this.workers[slot]
      const threadId = state.worker(slot, L.W_THREAD_ID)
      if (threadId !== record.threadId) {
        // a new owner zeroed the slot when it claimed it (or the slot is free)
        record.threadId = threadId
        record.last.fill(0)
        record.total.fill(0)
      }
      if (threadId === 0) continue
      for (const field of WORKER_COUNTERS) {
        const current = state.worker(slot, field) >>> 0
        const d = delta32(current, record.last[field])
        record.total[field] += d
        this.allWorkers[field] += d
        record.last[field] = current
      }
    }
  }

  /** Total of a header counter (H_*). */
  header (field: number): number { return this.headerTotal[field] }

  /** Total of an upstream counter (U_*) for the upstream named `key` (upstreamKey: address, or pool/address); 0 before its first sample. */
  upstream (key: string, field: number): number {
    return this.upstreams.get(key)?.total[field] ?? 0
  }

  /**
   * An upstream counter summed over every upstream ever configured, those
   * removed by a reload included: monotonic.
   */
  upstreamAll (field: number): number {
    let sum = this.retired[field]
    for (const record of this.upstreams.values()) sum += record.total[field]
    return sum
  }

  /** A byte counter kept as a low cell and a _HI cell (`field` is the low one), for one upstream. */
  upstreamBytes (address: string, field: number): number {
    return this.upstream(address, field) + this.upstream(address, field + 1) * TWO_32
  }

  /** Date.now() since which `address` has been in its current health/draining state (first sample if never changed). */
  upstreamStateSince (address: string): number {
    return this.upstreams.get(address)?.stateSinceMs ?? Date.now()
  }

  /** A worker byte counter (low cell + _HI cell, `field` the low one) summed over every thread. */
  allWorkersBytes (field: number): number {
    return this.allWorkers[field] + this.allWorkers[field + 1] * TWO_32
  }

  /** Total of a worker counter (W_*) for the thread now in `slot`. */
  worker (slot: number, field: number): number { return this.workers[slot].total[field] }

  /** A worker counter summed over every thread that has run. */
  allWorkersTotal (field: number): number { return this.allWorkers[field] }

  start (intervalMs: number, table: () => readonly UpstreamEntry[]): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => this.sample(table()), intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
