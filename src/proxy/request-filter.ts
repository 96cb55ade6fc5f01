/**
 * The request filter phase: decide the client's address (trusted proxies),
 * then the firewall and the rate limit. A decision, not an action: it returns
 * the catalogue code to answer with, or null to go on; only the connection
 * writes to sockets.
 */
import type { ProxyContext, RateDecisionLike } from './context'
import type { FirewallRequest } from '../firewall/types'
import type { HeadParser } from '../http/head-parser'
import { H_X_FORWARDED_FOR } from '../http/header-names'
import { H_RATE_LIMITED } from '../shared/layout'

/** What the filter reads and fills in of the current request. */
export interface FilteredRequest extends FirewallRequest {
  readonly parser: HeadParser
  /** The socket peer's address. */
  readonly peerIp: string
  clientIp: string
  rate: RateDecisionLike | null
  /** Why the request was refused, for the log. */
  lastFailure: string
}

/** 'pending': a cluster lease is being fetched; park the request (limiter.wait) and call limitRequest again. */
export type FilterVerdict = 'SWY_ERR_FIREWALL_DENIED' | 'SWY_ERR_RATE_LIMITED' | 'pending' | null

export function filterRequest (ctx: ProxyContext, req: FilteredRequest): FilterVerdict {
  const resolve = ctx.resolveClientIp
  req.clientIp = resolve === null ? req.peerIp : resolve(req.peerIp, req.parser.headerOfKind(H_X_FORWARDED_FOR))
  const firewall = ctx.firewall
  if (firewall !== null) {
    const rule = firewall.evaluate(req)
    if (rule >= 0) {
      req.lastFailure = `firewall rule ${firewall.ruleName(rule)}`
      return 'SWY_ERR_FIREWALL_DENIED'
    }
  }
  return limitRequest(ctx, req)
}

/** The rate-limit part of the filter (also run alone when a parked request's lease question is answered). */
export function limitRequest (ctx: ProxyContext, req: FilteredRequest): FilterVerdict {
  const limiter = ctx.limiter
  if (limiter !== null) {
    const decision = req.rate ?? (req.rate = limiter.newDecision())
    if (!limiter.check(req.clientIp, Date.now(), decision)) {
      if (decision.pending) return 'pending'
      ctx.state.addHeader(H_RATE_LIMITED, 1)
      req.lastFailure = 'rate limited'
      return 'SWY_ERR_RATE_LIMITED'
    }
  }
  return null
}
