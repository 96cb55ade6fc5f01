/**
 * Builds the optional policy hooks of a thread's ProxyContext from config:
 * client-IP resolution, firewall, rate limiting, sticky sessions. A section
 * that is absent leaves its hook null (one branch per request).
 */
import type { Config } from '../config/types'
import type { UpstreamEntry } from '../shared/state'
import type { ProxyContext } from './context'
import { createFirewall } from '../firewall/index'
import { createRateLimiter, createClientIpResolver } from '../ratelimit/index'
import { createSticky } from '../sticky/index'
import { logger } from '../log'
import { GlobalRateLimiter, type LeaseBroker } from '../cluster/global-limiter'

/**
 * `leases`: this thread's broker to the primary's Redis leases, when the
 * cluster section is set (null otherwise): rateLimit then counts across instances.
 */
export function installPolicies (ctx: ProxyContext, config: Config, table: readonly UpstreamEntry[], stickySecret: string | null, leases: LeaseBroker | null = null): void {
  ctx.firewall = config.firewall !== undefined ? createFirewall(config.firewall, ctx.state, logger.child({ component: 'firewall' })) : null
  const rl = config.rateLimit
  ctx.resolveClientIp = rl !== undefined && rl.trustProxy.length > 0 ? createClientIpResolver(rl.trustProxy) : null
  const cluster = config.cluster
  ctx.limiter = rl === undefined || ctx.state.rateTableSlots === 0
    ? null
    : leases !== null && cluster !== undefined && cluster.rateLimit.scope === 'global'
      ? new GlobalRateLimiter(rl, cluster.rateLimit.onRedisFailure, ctx.state, leases)
      : createRateLimiter(rl, ctx.state)
  ctx.sticky = config.stickySessions !== undefined ? createSticky(config.stickySessions, table, stickySecret ?? undefined) : null
}
