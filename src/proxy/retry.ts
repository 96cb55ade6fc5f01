/**
 * What to do after an upstream exchange failed before a response reached the
 * client: a pure decision on the failure's code and what was already sent
 * (Pingora's ErrorSource + RetryType), tested as a table in
 * test/unit/retry.test.ts.
 */
import type { UpstreamFailure } from './upstream'

/**
 * reconnect: the same upstream again on a fresh connection, free (a pooled
 *            connection the upstream had already closed: the request never
 *            reached it, nobody is to blame);
 * nextFree:  another upstream, free (connecting failed: nothing was sent);
 * next:      another upstream, spending one of `retries`;
 * fail:      answer the client with the failure's code.
 */
export type RetryAction = 'reconnect' | 'nextFree' | 'next' | 'fail'

/** RFC 9110 §9.2.2: methods whose repetition has the effect of one request. */
export function isIdempotent (method: string): boolean {
  switch (method) {
    case 'GET': case 'HEAD': case 'OPTIONS': case 'TRACE': case 'PUT': case 'DELETE': return true
    default: return false
  }
}

export function decideRetry (code: UpstreamFailure, staleReuse: boolean, bodySent: boolean, method: string, retriesLeft: number): RetryAction {
  if (code === 'SWY_ERR_UPSTREAM_CONNECT') return 'nextFree'
  // only a closed connection before any response byte can be replayed, and only a request that
  // may be repeated (RFC 9110 §9.2.2) and whose body is not half gone (nothing to replay it from);
  // a timeout is never replayed: the upstream may still be working on it
  if (code !== 'SWY_ERR_UPSTREAM_RESET' || bodySent || !isIdempotent(method)) return 'fail'
  if (staleReuse) return 'reconnect'
  return retriesLeft > 0 ? 'next' : 'fail'
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
