/**
 * Builds the optional policy hooks of a thread's ProxyContext from config:
 * client-IP resolution, firewall, rate limiting. (Sticky sessions are per pool:
 * src/routing/pools.ts.) A section
 * that is absent leaves its hook null (one branch per request).
 */
import type { Config } from '../config/types'
import type { ProxyContext } from './context'
import { createFirewall } from '../firewall/index'
import { createRateLimiter, createClientIpResolver } from '../ratelimit/index'
import { logger } from '../log'

export function installPolicies (ctx: ProxyContext, config: Config): void {
  ctx.firewall = config.firewall !== undefined ? createFirewall(config.firewall, ctx.state, logger.child({ component: 'firewall' })) : null
  const rl = config.rateLimit
  ctx.resolveClientIp = rl !== undefined && rl.trustProxy.length > 0 ? createClientIpResolver(rl.trustProxy) : null
  ctx.limiter = rl !== undefined && ctx.state.rateTableSlots > 0 ? createRateLimiter(rl, ctx.state) : null
}
