/**
 * Typed access to the shared state buffer (layout in ./layout). The primary
 * creates it; every worker attaches to the same SharedArrayBuffer, so all
 * threads see the same numbers without messages.
 *
 * Counters change only through Atomics.add / compareExchange; reads use
 * Atomics.load. Nothing here allocates on the data path.
 */
import * as L from './layout'
import type { UpstreamTls } from '../tls/upstream'

export interface SharedStateInit {
  buffer: SharedArrayBuffer
  /** Date.now() at creation: timestamps in the buffer are relative to it. */
  epochMs: number
  rateTableSlots: number
}

/**
 * One configured upstream as every thread sees it; the table is swapped whole on reload.
 * The resilience fields are optional so that tests can build bare entries; buildUpstreamTable sets them all.
 */
export interface UpstreamEntry {
  /** Index of this upstream's block in the shared buffer (stable across reloads for the same address). */
  readonly slot: number
  /** Position in its pool's list (the index the pool's balancer returns). */
  readonly index: number
  /** Name of the pool it belongs to (an address in two pools is two entries, two slots). */
  readonly pool: string
  /** The pool's slot in the shared pool region (src/routing/pools.ts). */
  readonly poolSlot: number
  readonly address: string
  readonly host: string
  readonly port: number
  readonly weight: number
  /** Opaque identifier safe to show to clients (never the address). */
  readonly id: string
  /** Takes traffic only while no primary upstream of its pool is healthy. */
  readonly backup?: boolean
  /** Requests in flight to it across all threads, at most; 0 or absent = no cap. */
  readonly maxConnections?: number
  /** Slow start ramp after it becomes healthy (its own or healthCheck.slowStartMs); 0 or absent = off. */
  readonly slowStartMs?: number
  /** TLS to this upstream (upstreams[].tls, caFile already read), null for plain TCP. */
  readonly tls?: UpstreamTls | null
  /** upstreams[].proxyProtocol: the header sent first on each new connection, null when off. */
  readonly proxyProtocol?: 'v1' | 'v2' | null
}

/** The gauges a worker holds a share of (released by the primary when it dies). */
export type HeldField = typeof L.U_ACTIVE_REQUESTS | typeof L.U_OPEN_SOCKETS | typeof L.U_RETRIES_ACTIVE
/** Index of the LATENCY_BOUNDS_MS bucket for `ms` (the last index is +Inf). */
export function latencyBucket (ms: number): number {
  const bounds = L.LATENCY_BOUNDS_MS
  let b = 0
  while (b < bounds.length && ms > bounds[b]) b++
  return b
}

const TWO_32 = 4294967296

/** Add a byte count to a wrapping low cell and, for counts of 2^32 or more, its high cell. */
function addBytes (i32: Int32Array, lo: number, hi: number, bytes: number): void {
  if (bytes <= 0) return
  Atomics.add(i32, lo, bytes | 0) // ToInt32: the low 32 bits; the sampler reads deltas mod 2^32
  if (bytes >= TWO_32) Atomics.add(i32, hi, (bytes / TWO_32) | 0)
}

/**
 * A status code's class, 1..5; 0 for no status. 600..999 (three digits, outside RFC 9110's range, relayed as
 * they are) count as 5xx, as RFC 9110 §15 tells a client to process them.
 */
export function statusClass (status: number): number {
  return status >= 600 ? 5 : (status / 100) | 0
}

export class SharedState {
  readonly buffer: SharedArrayBuffer
  readonly i32: Int32Array
  readonly epochMs: number
  readonly rateTableSlots: number
  /** View of the rate-limit table (empty when rate limiting is off). */
  readonly rateTable: Int32Array

  constructor (init: SharedStateInit) {
    this.buffer = init.buffer
    this.i32 = new Int32Array(init.buffer)
    this.epochMs = init.epochMs
    this.rateTableSlots = init.rateTableSlots
    this.rateTable = new Int32Array(init.buffer, L.RATE_OFFSET * 4, init.rateTableSlots * L.RATE_SLOT_INTS)
    if (Atomics.load(this.i32, L.H_MAGIC) !== L.MAGIC) throw new Error('shared state buffer is not initialised')
  }

  static create (rateTableSlots: number): SharedState {
    const buffer = new SharedArrayBuffer(L.stateInts(rateTableSlots) * 4)
    Atomics.store(new Int32Array(buffer), L.H_MAGIC, L.MAGIC)
    return new SharedState({ buffer, epochMs: Date.now(), rateTableSlots })
  }

  toInit (): SharedStateInit {
    return { buffer: this.buffer, epochMs: this.epochMs, rateTableSlots: this.rateTableSlots }
  }

  /** Whether a holdings cell exists for `field`, and which. */
  static heldCell (field: HeldField): number {
    return field === L.U_ACTIVE_REQUESTS ? L.HELD_ACTIVE_REQUESTS : field === L.U_OPEN_SOCKETS ? L.HELD_OPEN_SOCKETS : L.HELD_RETRIES_ACTIVE
  }

  /** Milliseconds since the epoch as an int32 (wraps after ~24 days; compare with `elapsed`). */
  now (): number {
    return (Date.now() - this.epochMs) | 0
  }

  /** Wrap-safe `now - then` for timestamps from `now()`. */
  static elapsed (now: number, then: number): number {
    return (now - then) | 0
  }

  // ---- header ---------------------------------------------------------------
  header (field: number): number { return Atomics.load(this.i32, field) }
  addHeader (field: number, delta: number): number { return Atomics.add(this.i32, field, delta) }

  /** Tracing span counters (T_* in layout.ts), all threads together; uint32, wrapping. */
  tracing (field: number): number { return Atomics.load(this.i32, L.TRACING_OFFSET + field) >>> 0 }
  addTracing (field: number, delta: number): void { Atomics.add(this.i32, L.TRACING_OFFSET + field, delta) }
  storeHeader (field: number, value: number): void { Atomics.store(this.i32, field, value) }

  /** A pool's round-robin cursor, shared by every thread (Pingora's fetch_add). */
  nextCursor (poolSlot = 0): number { return Atomics.add(this.i32, L.POOLS_OFFSET + poolSlot * L.POOL_INTS + L.P_RR_CURSOR, 1) >>> 0 }

  // ---- per pool (layout: pools; owner: src/routing/pools.ts) ----------------
  pool (poolSlot: number, field: number): number { return Atomics.load(this.i32, L.POOLS_OFFSET + poolSlot * L.POOL_INTS + field) }
  addPool (poolSlot: number, field: number, delta: number): number { return Atomics.add(this.i32, L.POOLS_OFFSET + poolSlot * L.POOL_INTS + field, delta) }
  storePool (poolSlot: number, field: number, value: number): void { Atomics.store(this.i32, L.POOLS_OFFSET + poolSlot * L.POOL_INTS + field, value) }

  /** Reset a pool slot for a newly configured pool (primary only). */
  initPoolSlot (poolSlot: number): void {
    const base = L.POOLS_OFFSET + poolSlot * L.POOL_INTS
    for (let i = 0; i < L.POOL_INTS; i++) Atomics.store(this.i32, base + i, 0)
    Atomics.store(this.i32, base + L.P_IN_USE, 1)
  }

  // ---- per route hit counters -------------------------------------------------
  addRouteHit (route: number): void {
    if (route < L.MAX_ROUTES) Atomics.add(this.i32, L.ROUTES_OFFSET + route, 1)
  }

  routeHits (route: number): number {
    return route < L.MAX_ROUTES ? Atomics.load(this.i32, L.ROUTES_OFFSET + route) >>> 0 : 0
  }

  storeRouteHits (route: number, value: number): void {
    if (route < L.MAX_ROUTES) Atomics.store(this.i32, L.ROUTES_OFFSET + route, value)
  }

  // ---- per upstream ---------------------------------------------------------
  static upstreamBase (slot: number): number { return L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS }

  upstream (slot: number, field: number): number {
    return Atomics.load(this.i32, L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS + field)
  }

  addUpstream (slot: number, field: number, delta: number): number {
    return Atomics.add(this.i32, L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS + field, delta)
  }

  storeUpstream (slot: number, field: number, value: number): void {
    Atomics.store(this.i32, L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS + field, value)
  }

  casUpstream (slot: number, field: number, expected: number, value: number): number {
    return Atomics.compareExchange(this.i32, L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS + field, expected, value)
  }

  /**
   * Change an upstream's U_ACTIVE_REQUESTS or U_OPEN_SOCKETS by `delta` on
   * behalf of the worker in `workerSlot`, and record it as that worker's
   * holding (layout: holdings), so that the primary can take it back if the
   * worker dies (releaseWorkerHoldings). workerSlot -1 (a thread without a
   * slot) changes only the gauge. Not atomic as a pair: only the worker itself
   * writes its cell while it lives, and the primary only after it exited.
   */
  addHeld (workerSlot: number, upstreamSlot: number, field: HeldField, delta: number): void {
    Atomics.add(this.i32, L.UPSTREAMS_OFFSET + upstreamSlot * L.UPSTREAM_INTS + field, delta)
    if (workerSlot === -1) return
    const cell = L.HOLDINGS_OFFSET + (workerSlot * L.MAX_UPSTREAMS + upstreamSlot) * L.HOLDING_INTS + SharedState.heldCell(field)
    Atomics.add(this.i32, cell, delta)
  }

  /**
   * addHeld(+1) on U_ACTIVE_REQUESTS only while the gauge is below `max`
   * (upstreams[].maxConnections): a compare-and-swap loop, so threads racing
   * for the last slot cannot both take it. false when the upstream is at its cap.
   */
  tryAddActiveBelow (workerSlot: number, upstreamSlot: number, max: number): boolean {
    const index = L.UPSTREAMS_OFFSET + upstreamSlot * L.UPSTREAM_INTS + L.U_ACTIVE_REQUESTS
    for (let attempt = 0; attempt < 64; attempt++) {
      const current = Atomics.load(this.i32, index)
      if (current >= max) return false
      if (Atomics.compareExchange(this.i32, index, current, current + 1) === current) {
        if (workerSlot !== -1) Atomics.add(this.i32, L.HOLDINGS_OFFSET + (workerSlot * L.MAX_UPSTREAMS + upstreamSlot) * L.HOLDING_INTS + L.HELD_ACTIVE_REQUESTS, 1)
        return true
      }
    }
    return false // heavy contention: treat as full, the caller looks elsewhere or queues
  }

  /** What the worker in `workerSlot` holds of an upstream's gauge (tests, diagnostics). */
  held (workerSlot: number, upstreamSlot: number, field: HeldField): number {
    return Atomics.load(this.i32, L.HOLDINGS_OFFSET + (workerSlot * L.MAX_UPSTREAMS + upstreamSlot) * L.HOLDING_INTS + SharedState.heldCell(field))
  }

  /**
   * The primary, once the worker in `workerSlot` has exited: subtract each of
   * its holdings from the upstream's gauge and zero it. Call before the slot
   * is freed (releaseWorkerSlot), or a new worker could claim the slot and add
   * to cells still being released. Returns the totals taken back.
   */
  releaseWorkerHoldings (workerSlot: number): { activeRequests: number, openSockets: number } {
    const released = { activeRequests: 0, openSockets: 0 }
    if (workerSlot < 0 || workerSlot >= L.MAX_WORKER_SLOTS) return released
    const base = L.HOLDINGS_OFFSET + workerSlot * L.MAX_UPSTREAMS * L.HOLDING_INTS
    for (let upstream = 0; upstream < L.MAX_UPSTREAMS; upstream++) {
      const cell = base + upstream * L.HOLDING_INTS
      const gauge = L.UPSTREAMS_OFFSET + upstream * L.UPSTREAM_INTS
      const active = Atomics.exchange(this.i32, cell + L.HELD_ACTIVE_REQUESTS, 0)
      if (active !== 0) { Atomics.sub(this.i32, gauge + L.U_ACTIVE_REQUESTS, active); released.activeRequests += active }
      const sockets = Atomics.exchange(this.i32, cell + L.HELD_OPEN_SOCKETS, 0)
      if (sockets !== 0) { Atomics.sub(this.i32, gauge + L.U_OPEN_SOCKETS, sockets); released.openSockets += sockets }
      const retries = Atomics.exchange(this.i32, cell + L.HELD_RETRIES_ACTIVE, 0)
      if (retries !== 0) Atomics.sub(this.i32, gauge + L.U_RETRIES_ACTIVE, retries)
    }
    return released
  }

  /** Eligible for new requests: healthy and not drained by an operator. */
  isAvailable (slot: number): boolean {
    const base = L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS
    return Atomics.load(this.i32, base + L.U_HEALTHY) === 1 &&
      Atomics.load(this.i32, base + L.U_ADMIN_STATE) === L.ADMIN_ENABLED
  }

  /** Reset a slot for a newly configured upstream (primary only). Its slow start ramps from now. */
  initUpstreamSlot (slot: number): void {
    const base = L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS
    for (let i = 0; i < L.UPSTREAM_INTS; i++) Atomics.store(this.i32, base + i, 0)
    Atomics.store(this.i32, base + L.U_RAMP_START, this.now())
    Atomics.store(this.i32, base + L.U_HEALTHY, 1)
    Atomics.store(this.i32, base + L.U_IN_USE, 1)
    this.healthChanged()
  }

  /**
   * Call after changing U_HEALTHY or U_ADMIN_STATE (after: a thread that sees
   * the new generation must also see the change). Pool views (src/proxy/pool-gate.ts)
   * recompute who is eligible only when this moves.
   */
  healthChanged (): void { Atomics.add(this.i32, L.H_HEALTH_GENERATION, 1) }

  /**
   * Take a healthy upstream out (1 -> 0), saying who did (EJECT_*): the time
   * and the source go in before the flip, so nobody sees HEALTHY = 0 next to
   * a stale reason. true for the one caller, across threads, that flipped it.
   */
  eject (slot: number, source: number, nowMs: number): boolean {
    this.storeUpstream(slot, L.U_EJECTED_AT, nowMs)
    this.storeUpstream(slot, L.U_EJECT_SOURCE, source)
    if (this.casUpstream(slot, L.U_HEALTHY, 1, 0) !== 1) return false
    this.addUpstream(slot, L.U_HEALTH_TRANSITIONS, 1)
    this.healthChanged()
    return true
  }

  /** Put an ejected upstream back (0 -> 1); its slow start ramps from now. true for the caller that flipped it. */
  revive (slot: number): boolean {
    this.storeUpstream(slot, L.U_RAMP_START, this.now())
    if (this.casUpstream(slot, L.U_HEALTHY, 0, 1) !== 0) return false
    this.addUpstream(slot, L.U_HEALTH_TRANSITIONS, 1)
    this.healthChanged()
    return true
  }

  // ---- per pool (resilience) --------------------------------------------------
  casPool (pool: number, field: number, expected: number, value: number): number {
    return Atomics.compareExchange(this.i32, L.POOLS_OFFSET + pool * L.POOL_INTS + field, expected, value)
  }

  /** Record a response's status class and head latency. */
  recordResponse (slot: number, status: number, latencyMs: number): void {
    const base = L.UPSTREAMS_OFFSET + slot * L.UPSTREAM_INTS
    const cls = statusClass(status)
    if (cls >= 1) Atomics.add(this.i32, base + L.U_STATUS_1XX + cls - 1, 1)
    Atomics.add(this.i32, base + L.U_LATENCY_SUM_US, (latencyMs * 1000) | 0)
    Atomics.add(this.i32, base + L.U_LATENCY_BUCKETS + latencyBucket(latencyMs), 1)
  }

  /**
   * Count one response a client received, relayed or answered locally, on the
   * answering thread's worker slot (no other thread writes those cells), and
   * on the upstream the request went toward (`upstreamSlot`, -1 for none).
   * `durationMs` < 0 leaves the duration histogram alone (a tunnel's 101).
   * Byte counts may exceed 2^32: the low 32 bits go to the wrapping counter,
   * whole 2^32s to its _HI cell. A handful of Atomics.add, no allocation.
   */
  recordClientResponse (workerSlot: number, upstreamSlot: number, status: number, local: boolean,
    durationMs: number, requestBytes: number, responseBytes: number): void {
    const cls = statusClass(status)
    if (cls < 1) return // no response
    const i32 = this.i32
    const w = L.WORKERS_OFFSET + workerSlot * L.WORKER_INTS
    Atomics.add(i32, w + L.W_RESPONSES + (local ? L.SOURCE_LOCAL : L.SOURCE_UPSTREAM) * 5 + cls - 1, 1)
    addBytes(i32, w + L.W_REQUEST_BYTES, w + L.W_REQUEST_BYTES_HI, requestBytes)
    addBytes(i32, w + L.W_RESPONSE_BYTES, w + L.W_RESPONSE_BYTES_HI, responseBytes)
    if (durationMs >= 0) {
      Atomics.add(i32, w + L.W_DURATION_SUM_US, (durationMs * 1000) | 0)
      Atomics.add(i32, w + L.W_DURATION_BUCKETS + latencyBucket(durationMs), 1)
    }
    if (upstreamSlot === -1) return
    const u = L.UPSTREAMS_OFFSET + upstreamSlot * L.UPSTREAM_INTS
    if (local) {
      if (cls === 4) Atomics.add(i32, u + L.U_LOCAL_4XX, 1)
      else if (cls === 5) Atomics.add(i32, u + L.U_LOCAL_5XX, 1)
    }
    addBytes(i32, u + L.U_REQUEST_BYTES, u + L.U_REQUEST_BYTES_HI, requestBytes)
    addBytes(i32, u + L.U_RESPONSE_BYTES, u + L.U_RESPONSE_BYTES_HI, responseBytes)
  }

  // ---- per worker slot ------------------------------------------------------
  worker (slot: number, field: number): number {
    return Atomics.load(this.i32, L.WORKERS_OFFSET + slot * L.WORKER_INTS + field)
  }

  addWorker (slot: number, field: number, delta: number): number {
    return Atomics.add(this.i32, L.WORKERS_OFFSET + slot * L.WORKER_INTS + field, delta)
  }

  storeWorker (slot: number, field: number, value: number): void {
    Atomics.store(this.i32, L.WORKERS_OFFSET + slot * L.WORKER_INTS + field, value)
  }

  /** Claim a free worker slot for `threadId`; -1 when all are taken. */
  claimWorkerSlot (threadId: number): number {
    for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
      const base = L.WORKERS_OFFSET + slot * L.WORKER_INTS
      if (Atomics.compareExchange(this.i32, base + L.W_THREAD_ID, 0, threadId) === 0) {
        for (let i = 1; i < L.WORKER_INTS; i++) Atomics.store(this.i32, base + i, 0)
        return slot
      }
    }
    return -1
  }

  /**
   * Client connections open over every thread (W_ACCEPTED_OPEN of the claimed slots): what
   * limits.maxConnections caps. A dead worker's share is zeroed with its slot (releaseWorkerSlot).
   */
  acceptedOpen (): number {
    let n = 0
    for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
      const base = L.WORKERS_OFFSET + slot * L.WORKER_INTS
      if (Atomics.load(this.i32, base + L.W_THREAD_ID) !== 0) n += Atomics.load(this.i32, base + L.W_ACCEPTED_OPEN)
    }
    return n
  }

  /** The slot `threadId` claimed, or -1. */
  workerSlotOf (threadId: number): number {
    if (threadId <= 0) return -1 // 0 marks a free slot
    for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
      if (Atomics.load(this.i32, L.WORKERS_OFFSET + slot * L.WORKER_INTS + L.W_THREAD_ID) === threadId) return slot
    }
    return -1
  }

  /** Free the slot of an exited thread (primary). Returns the slot freed or -1. */
  releaseWorkerSlot (threadId: number): number {
    for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
      const base = L.WORKERS_OFFSET + slot * L.WORKER_INTS
      if (Atomics.load(this.i32, base + L.W_THREAD_ID) !== threadId) continue
      // its connections died with it: zeroed before the slot is free, so a replacement's counts are its own
      Atomics.store(this.i32, base + L.W_OPEN_CONNECTIONS, 0)
      Atomics.store(this.i32, base + L.W_ACCEPTED_OPEN, 0)
      if (Atomics.compareExchange(this.i32, base + L.W_THREAD_ID, threadId, 0) === threadId) return slot
    }
    return -1
  }

  // ---- firewall rule hits ---------------------------------------------------
  addFirewallHit (rule: number): void {
    if (rule < L.MAX_FIREWALL_RULES) Atomics.add(this.i32, L.FIREWALL_OFFSET + rule, 1)
  }

  firewallHits (rule: number): number {
    return Atomics.load(this.i32, L.FIREWALL_OFFSET + rule) >>> 0
  }

  // ---- per listener -----------------------------------------------------------
  addListener (listener: number, field: number, delta: number): void {
    if (listener >= 0 && listener < L.MAX_LISTENERS) Atomics.add(this.i32, L.LISTENERS_OFFSET + listener * L.LISTENER_INTS + field, delta)
  }

  /** A listener's field; counters read as uint32, the open-connections gauge as int32. */
  listener (listener: number, field: number): number {
    const v = Atomics.load(this.i32, L.LISTENERS_OFFSET + listener * L.LISTENER_INTS + field)
    return field === L.L_OPEN_CONNECTIONS ? v : v >>> 0
  }
}
