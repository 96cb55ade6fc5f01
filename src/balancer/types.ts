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

export interface Balancer {
  /**
   * Index into the table of an upstream that is available (healthy, not
   * draining) and not already tried; -1 when there is none.
   */
  pick (ctx: PickContext): number
}
