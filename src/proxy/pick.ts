/**
 * The upstream phase: which upstream of the request's pool gets it. A valid
 * sticky cookie wins while its upstream is available and untried; otherwise
 * the pool's balancer picks among the available, untried ones. Returns the
 * index into pool.table, or -1.
 */
import type { ProxyContext } from './context'
import type { PickContext } from '../balancer/types'
import type { PoolRuntime } from '../routing/pools'
import { H_STICKY_HITS } from '../shared/layout'

export function pickUpstream (ctx: ProxyContext, pool: PoolRuntime, pick: PickContext, stickyIndex: number): number {
  const table = pool.table
  if (stickyIndex >= 0 && stickyIndex < table.length && pick.tried[stickyIndex] === 0 && ctx.state.isAvailable(table[stickyIndex].slot)) {
    ctx.state.addHeader(H_STICKY_HITS, 1)
    return stickyIndex
  }
  return pool.balancer.pick(pick)
}
