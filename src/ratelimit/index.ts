/**
 * Per-client rate limiting in shared memory. One limiter per thread, all over
 * the same SharedState table, so a client's count is the same whichever thread
 * serves it. How the table is probed, claimed and what happens when it is
 * full: ./table.ts. The algorithms: ./fixed-window.ts, ./sliding-window.ts,
 * ./token-bucket.ts.
 *
 * Wiring (per thread, at config time):
 *   const limiter = createRateLimiter(config.rateLimit, state)   // state from SharedState.create(config.rateLimit.tableSize)
 *   const decision = limiter.newDecision()                       // one per connection, reused
 *   if (!limiter.check(clientIp, Date.now(), decision)) reply 429 with limiter.headers(decision)
 * The limiter does not touch H_RATE_LIMITED: the caller counts its 429s.
 */
import type { RateLimitConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import type { RateLimiter } from './decision'
import { FixedWindowLimiter } from './fixed-window'
import { SlidingWindowLimiter } from './sliding-window'
import { TokenBucketLimiter } from './token-bucket'

export { RateDecision, type RateLimiter } from './decision'
export type { ScopedRateLimitConfig } from './table'
export { rateLimitHeaders } from './headers'
export { createClientIpResolver, type ClientIpResolver } from './client-ip'

/** Throws SwitchyardError SWY_ERR_CONFIG_INVALID when config and state do not fit (start-up only). */
export function createRateLimiter (config: RateLimitConfig, state: SharedState): RateLimiter {
  switch (config.algorithm) {
    case 'sliding-window': return new SlidingWindowLimiter(config, state)
    case 'token-bucket': return new TokenBucketLimiter(config, state)
    default: return new FixedWindowLimiter(config, state)
  }
}
