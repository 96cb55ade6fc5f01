/**
 * The seam between the request path and the balancing algorithms. One
 * Balancer per thread per upstream table; the table is immutable and swapped
 * whole (with a new Balancer) when the config or upstream list changes.
 * Health, drain state and load live in SharedState, so a pick is correct
 * across worker threads.
 */

/** Per-request input to pick(); one instance per connection, reset per request. */
export class PickContext {
  /** Client IP as the request path resolved it (after trustProxy). */
  clientIp = ''
  /** consistent-hash / ip-hash key when hashKey.source is header or cookie; '' when absent. */
  hashKey = ''
  /** tried[index] = 1 for upstreams already tried for this request (retries); see triedCount. */
  readonly tried = new Uint8Array(64)
  triedCount = 0

  reset (): void {
    if (this.triedCount > 0) { this.tried.fill(0); this.triedCount = 0 }
    this.hashKey = ''
  }

  markTried (index: number): void {
    if (this.tried[index] === 0) { this.tried[index] = 1; this.triedCount++ }
  }
}

/**
 * What a balancer reads: SharedState itself, or a pool's view of it
 * (src/proxy/pool-gate.ts), which decides availability for the pool as a
 * whole (panic mode, backups, connection caps) and answers from a cached mask.
 */
export interface BalancerState {
  /** Eligible for this pick (healthy, not drained; or whatever the pool's mode says). */
  isAvailable (slot: number): boolean
  upstream (slot: number, field: number): number
  nextCursor (poolSlot?: number): number
}

export interface Balancer {
  /**
   * Calling pick() again is a fresh draw from the same distribution
   * (round-robin, weighted round-robin, random): slow start may then reject a
   * draw and redraw, which makes shares exactly proportional to the ramped
   * weights. Otherwise (least-connections, power-of-two-choices, the hashes:
   * the same inputs give the same answer) a rejected upstream is excluded for
   * the rest of that pick instead.
   */
  readonly redraws?: boolean
  /**
   * Index into the table of an upstream that is available (healthy, not
   * draining) and not already tried; -1 when there is none.
   */
  pick (ctx: PickContext): number
}
