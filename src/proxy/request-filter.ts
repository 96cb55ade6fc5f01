/**
 * The request filter phase: decide the client's address (trusted proxies),
 * then the firewall (unless the route turns it off) and the rate limits: the
 * global one, then the route's own (a request counts against both). A
 * decision, not an action: it returns
 * the catalogue code to answer with, or null to go on; only the connection
 * writes to sockets.
 */
import type { ProxyContext, RateDecisionLike } from './context'
import type { FirewallRequest } from '../firewall/types'
import type { HeadParser } from '../http/head-parser'
import { H_X_FORWARDED_FOR } from '../http/header-names'
import { H_RATE_LIMITED } from '../shared/layout'
import type { CompiledRoute } from '../routing/router'
import { wallNow } from './clock'

/** What the filter reads and fills in of the current request. */
export interface FilteredRequest extends FirewallRequest {
  readonly parser: HeadParser
  /** The socket peer's address. */
  readonly peerIp: string
  clientIp: string
  rate: RateDecisionLike | null
  /** The decision of the route's own limit (made on first use). */
  routeRate: RateDecisionLike | null
  /** The route the request matched (null: none). */
  readonly route: CompiledRoute | null
  /** Why the request was refused, for the log. */
  lastFailure: string
  /** The rate-limit fields of a 429, set when a limit refuses. */
  rateHeaders: string
}

/** 'pending': a cluster lease is being fetched; park the request (limiter.wait) and call limitRequest again. */
export type FilterVerdict = 'SWY_ERR_FIREWALL_DENIED' | 'SWY_ERR_RATE_LIMITED' | 'pending' | null

export function filterRequest (ctx: ProxyContext, req: FilteredRequest): FilterVerdict {
  const resolve = ctx.resolveClientIp
  req.clientIp = resolve === null ? req.peerIp : resolve(req.peerIp, req.parser.headerOfKind(H_X_FORWARDED_FOR))
  const firewall = ctx.firewall
  const route = req.route
  if (firewall !== null && (route === null || route.firewall)) {
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
    if (!limiter.check(req.clientIp, wallNow(), decision)) {
      if (decision.pending) return 'pending'
      ctx.state.addHeader(H_RATE_LIMITED, 1)
      req.lastFailure = 'rate limited'
      req.rateHeaders = limiter.headers(decision)
      return 'SWY_ERR_RATE_LIMITED'
    }
  }
  // the route's own limit (local counters only), once the global one let the request through
  const route = req.route
  const routeLimiter = route !== null ? route.limiter : null
  if (routeLimiter !== null) {
    const decision = req.routeRate ?? (req.routeRate = routeLimiter.newDecision())
    if (!routeLimiter.check(req.clientIp, wallNow(), decision)) {
      ctx.state.addHeader(H_RATE_LIMITED, 1)
      req.lastFailure = `rate limited by route ${(route as CompiledRoute).name}`
      req.rateHeaders = routeLimiter.headers(decision)
      return 'SWY_ERR_RATE_LIMITED'
    }
  }
  return null
}
