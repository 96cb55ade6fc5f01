/**
 * What a rate-limit check answers, and the interface every algorithm
 * implements. One RateDecision lives on each connection and is overwritten by
 * every check, so checking allocates nothing.
 */

export class RateDecision {
  /** The request may proceed. */
  allowed: boolean
  /** Requests the policy allows per window (the bucket size for token-bucket). */
  limit: number
  /** Requests still available after this one (RateLimit `r`). */
  remaining: number
  /** Seconds until the quota is restored: the window's end, or a full bucket (RateLimit `t`). */
  resetSeconds: number
  /** Seconds a refused client should wait before retrying (Retry-After); 0 when allowed. */
  retryAfterSeconds: number
  /**
   * Cluster leases (src/cluster): not decided yet, the allowance is being
   * fetched from Redis; the request waits for it (allowed is false meanwhile).
   * Never set by the local limiters.
   */
  pending: boolean
  /** Cluster leases: the next check applies the Redis failure mode (the lease request failed). */
  fallback: boolean

  constructor () {
    this.allowed = false
    this.limit = 0
    this.remaining = 0
    this.resetSeconds = 0
    this.retryAfterSeconds = 0
    this.pending = false
    this.fallback = false
  }
}

export interface RateLimiter {
  /**
   * Count one request from `clientIp` at `nowMs` (any millisecond clock all
   * threads share, e.g. Date.now()) and fill `out`. Returns out.allowed.
   * Never blocks and never throws.
   */
  check (clientIp: string, nowMs: number, out: RateDecision): boolean
  /** A decision object to keep on a connection. */
  newDecision (): RateDecision
  /** Header lines for a 429 answering `decision` (see ./headers). */
  headers (decision: RateDecision): string
}

/** Whole seconds, rounded up, never below 1: Retry-After and `t` are delay-seconds (RFC 9110 §10.2.3). */
export function ceilSeconds (ms: number): number {
  const s = Math.ceil(ms / 1000)
  return s < 1 ? 1 : s
}
