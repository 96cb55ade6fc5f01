/**
 * The upstream phase: which upstream gets this request. A valid sticky cookie
 * wins while its upstream is available and untried; otherwise the balancer
 * picks among the available, untried ones. Returns the table index, or -1.
 */
import type { ProxyContext } from './context'
import type { PickContext } from '../balancer/types'
import { H_STICKY_HITS } from '../shared/layout'

export function pickUpstream (ctx: ProxyContext, pick: PickContext, stickyIndex: number): number {
  const table = ctx.table
  if (stickyIndex >= 0 && stickyIndex < table.length && pick.tried[stickyIndex] === 0 && ctx.state.isAvailable(table[stickyIndex].slot)) {
    ctx.state.addHeader(H_STICKY_HITS, 1)
    return stickyIndex
  }
  return ctx.balancer.pick(pick)
}
