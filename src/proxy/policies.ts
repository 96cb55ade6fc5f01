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

export function installPolicies (ctx: ProxyContext, config: Config, table: readonly UpstreamEntry[], stickySecret: string | null): void {
  ctx.firewall = config.firewall !== undefined ? createFirewall(config.firewall, ctx.state, logger.child({ component: 'firewall' })) : null
  const rl = config.rateLimit
  ctx.resolveClientIp = rl !== undefined && rl.trustProxy.length > 0 ? createClientIpResolver(rl.trustProxy) : null
  ctx.limiter = rl !== undefined && ctx.state.rateTableSlots > 0 ? createRateLimiter(rl, ctx.state) : null
  ctx.sticky = config.stickySessions !== undefined ? createSticky(config.stickySessions, table, stickySecret ?? undefined) : null
}
