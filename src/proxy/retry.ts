/**
 * What to do after an upstream exchange failed, or answered with a status
 * worth another try, before a response reached the client: a pure decision
 * on the failure's reason and on what was already sent (Pingora's
 * ErrorSource + RetryType), tested as a table in test/unit/retry.test.ts.
 *
 * Safe by construction: nothing is replayed that the upstream may have acted
 * on unless the request says a repeat is harmless (an idempotent method, RFC
 * 9110 §9.2.2, or an Idempotency-Key when retryIdempotencyKey is on,
 * draft-ietf-httpapi-idempotency-key-header), and a body is replayed only
 * when it was kept whole (retryBodyMaxBytes). The retry budget (Envoy's)
 * bounds retries in flight to a share of the pool's requests in flight, so a
 * pool where everything fails cannot be hit by retries on top.
 */
import type { Config } from '../config/types'
import type { UpstreamFailure } from './upstream'
import { RETRY_REASONS, type RetryReason } from '../health/pool-status'

export type { RetryReason }

/**
 * reconnect: the same upstream again on a fresh connection, free (a pooled
 *            connection the upstream had already closed: the request never
 *            reached it, nobody is to blame);
 * nextFree:  another upstream, free (connecting failed: nothing was sent);
 * next:      another upstream, spending one of `retries`;
 * budget:    would be `next`, but the retry budget is spent: answer as `fail`;
 * fail:      answer the client with the failure (or relay the response).
 */
export type RetryAction = 'reconnect' | 'nextFree' | 'next' | 'budget' | 'fail'

/** The retry settings of a pool, compiled once per config. */
export interface RetryPolicy {
  /** retryOn as a bit set over RETRY_REASONS (connect-failure always in). */
  readonly on: number
  /** statuses[s] = 1: `retriable-status` covers s. */
  readonly statuses: Uint8Array
  readonly retries: number
  readonly idempotencyKey: boolean
  readonly bodyMaxBytes: number
  readonly budgetPercent: number
}

/** Retries in flight a pool always allows, whatever its load (Envoy's min_retry_concurrency). */
export const MIN_RETRY_BUDGET = 3

export function reasonBit (reason: RetryReason): number {
  return 1 << RETRY_REASONS.indexOf(reason)
}

export function compileRetryPolicy (config: Pick<Config, 'retries' | 'retryOn' | 'retriableStatuses' | 'retryIdempotencyKey' | 'retryBodyMaxBytes' | 'retryBudgetPercent'>): RetryPolicy {
  let on = reasonBit('connect-failure')
  for (const reason of config.retryOn) on |= reasonBit(reason)
  const statuses = new Uint8Array(600)
  for (const s of config.retriableStatuses) statuses[s] = 1
  return {
    on,
    statuses,
    retries: config.retries,
    idempotencyKey: config.retryIdempotencyKey,
    bodyMaxBytes: config.retryBodyMaxBytes,
    budgetPercent: config.retryBudgetPercent,
  }
}

/** RFC 9110 §9.2.2: methods whose repetition has the effect of one request. */
export function isIdempotent (method: string): boolean {
  switch (method) {
    case 'GET': case 'HEAD': case 'OPTIONS': case 'TRACE': case 'PUT': case 'DELETE': return true
    default: return false
  }
}

/** May this request be sent twice? `hasIdempotencyKey` is read only for a method that is not idempotent. */
export function isReplaySafe (policy: RetryPolicy, method: string, hasIdempotencyKey: () => boolean): boolean {
  return isIdempotent(method) || (policy.idempotencyKey && hasIdempotencyKey())
}

/** The retry reason of a failed exchange, null for failures never retried (malformed or stalled responses). */
export function failureReason (code: UpstreamFailure): RetryReason | null {
  switch (code) {
    case 'SWY_ERR_UPSTREAM_CONNECT': return 'connect-failure'
    case 'SWY_ERR_UPSTREAM_RESET': return 'reset'
    case 'SWY_ERR_UPSTREAM_TIMEOUT': return 'timeout'
    default: return null
  }
}

/** The retry reason retryOn gives a response status, null when none covers it. Most specific first. */
export function statusReason (policy: RetryPolicy, status: number): RetryReason | null {
  if (status < 100 || status > 599) return null
  if (policy.statuses[status] === 1 && (policy.on & reasonBit('retriable-status')) !== 0) return 'retriable-status'
  if ((status === 502 || status === 503 || status === 504) && (policy.on & reasonBit('gateway-error')) !== 0) return 'gateway-error'
  if (status >= 500 && (policy.on & reasonBit('5xx')) !== 0) return '5xx'
  return null
}

/** What the decision looks at besides the reason. */
export interface RetryState {
  /** A pooled connection failed before any response byte (the upstream had closed it). */
  staleReuse: boolean
  /** Could the request be sent again as it was: nothing of its body went, or all of it was kept. */
  replayable: boolean
  /** A repeat is harmless: isReplaySafe. */
  safe: boolean
  retriesLeft: number
  /** The pool's retry budget has room for one more retry in flight. */
  budgetLeft: boolean
}

export function decideRetry (policy: RetryPolicy, reason: RetryReason | null, s: RetryState): RetryAction {
  if (reason === null) return 'fail'
  // nothing was sent: any request may go elsewhere, without spending a retry
  if (reason === 'connect-failure') return 'nextFree'
  // from here the upstream may have acted on the request: only a safe one, sent again whole
  if (!s.safe || !s.replayable) return 'fail'
  // the upstream had closed that pooled connection before our request reached it (RFC 9112 §9.3.1)
  if (reason === 'reset' && s.staleReuse) return 'reconnect'
  if ((policy.on & reasonBit(reason)) === 0) return 'fail'
  if (s.retriesLeft <= 0) return 'fail'
  return s.budgetLeft ? 'next' : 'budget'
}

/** Room in the budget: retries in flight below budgetPercent of requests in flight, MIN_RETRY_BUDGET at least. */
export function budgetAllows (percent: number, retriesInFlight: number, requestsInFlight: number): boolean {
  return retriesInFlight < Math.max(MIN_RETRY_BUDGET, Math.floor(requestsInFlight * percent / 100))
}

/**
 * Does this failure count against the upstream's passive health? Not a
 * stale pooled connection (`staleReuse`: reused, and closed before any
 * response byte: the upstream closed an idle connection, as it may), and
 * never the client's own stall. Failures after the request was sent have a further rule in
 * recordRequestFailure (src/health/passive.ts).
 */
export function blamesUpstream (code: UpstreamFailure, staleReuse: boolean): boolean {
  if (code === 'SWY_ERR_CLIENT_TIMEOUT') return false
  if (code === 'SWY_ERR_UPSTREAM_RESET' && staleReuse) return false
  return true
}
