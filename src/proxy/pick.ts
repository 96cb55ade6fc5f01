/**
 * The upstream phase: which upstream of the request's pool gets it. A valid
 * sticky cookie wins while its upstream is available and untried; otherwise
 * the pool's balancer picks among the upstreams the pool's gate lets through
 * (pool-gate.ts: panic mode, backups, connection caps). Slow start may refuse
 * a ramping upstream's turn (then a fresh draw, or that upstream is left out
 * of this pick: see Balancer.redraws). The chosen upstream's in-flight count
 * is taken here (under its cap, exactly), so the caller holds it on success.
 *
 * Returns the index into pool.table, PICK_NONE when no upstream is eligible,
 * or PICK_FULL when some were and every one of them is at its maxConnections
 * (the request may queue).
 */
import type { ProxyContext } from './context'
import type { PickContext } from '../balancer/types'
import type { PoolRuntime } from '../routing/pools'
import { H_STICKY_HITS, U_ACTIVE_REQUESTS } from '../shared/layout'
import { wallNow } from './clock'

export const PICK_NONE = -1
export const PICK_FULL = -2

/** Slow start refusals allowed before a turn is kept anyway (bounds a pick). */
const RAMP_REDRAWS = 8

export function pickUpstream (ctx: ProxyContext, pool: PoolRuntime, pick: PickContext, stickyIndex: number): number {
  const table = pool.table
  const gate = pool.gate
  // the sweeper's clock is too coarse for a ramp (it ticks at a fraction of the shortest timeout): read the time only when a ramp may be on
  gate.beginPick(gate.slowStart ? wallNow() : 0)
  if (stickyIndex >= 0 && stickyIndex < table.length && pick.tried[stickyIndex] === 0) {
    const slot = table[stickyIndex].slot
    if (gate.isAvailable(slot) && gate.acquire(ctx.workerSlot, slot)) {
      ctx.state.addHeader(H_STICKY_HITS, 1)
      return stickyIndex
    }
  }
  const balancer = pool.balancer
  const attempts = table.length + RAMP_REDRAWS
  for (let attempt = 0; attempt < attempts; attempt++) {
    const index = balancer.pick(pick)
    if (index === -1) break
    const slot = table[index].slot
    if (gate.ramping && attempt < RAMP_REDRAWS && !gate.admitTurn(slot)) {
      if (balancer.redraws !== true) gate.exclude(slot)
      continue
    }
    if (gate.acquire(ctx.workerSlot, slot)) return index
    // another thread took its last connection slot between the look and the take
    gate.exclude(slot)
    gate.sawFull = true
  }
  return gate.sawFull ? PICK_FULL : PICK_NONE
}

/**
 * Where a request switchyard sends on its own would go (a stale-while-revalidate
 * background request): the same pick, without keeping the in-flight count it took.
 */
export function peekUpstream (ctx: ProxyContext, pool: PoolRuntime, pick: PickContext): number {
  const index = pickUpstream(ctx, pool, pick, -1)
  if (index >= 0) ctx.state.addHeld(ctx.workerSlot, pool.table[index].slot, U_ACTIVE_REQUESTS, -1)
  return index
}
