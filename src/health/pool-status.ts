/**
 * Per pool resilience state for the admin API and /metrics, read from the
 * pool blocks of the shared state (layout: per pool). Counters are uint32
 * that wrap after 4 billion.
 */
import * as L from '../shared/layout'
import type { SharedState } from '../shared/state'
import type { PoolRef } from '../proxy/resilience-config'

/** Reasons a request is retried, in P_RETRIES order (the retryOn values). */
export const RETRY_REASONS = ['connect-failure', 'reset', 'timeout', '5xx', 'gateway-error', 'retriable-status'] as const
export type RetryReason = typeof RETRY_REASONS[number]

export interface PoolResilience {
  name: string
  /** Balancing over all its upstreams, health ignored (too few healthy). */
  panic: boolean
  panicTransitions: number
  /** Requests waiting for a connection slot, all threads. */
  queueWaiting: number
  queueTimeouts: number
  queueFull: number
  retryBudgetDenied: number
  retries: Record<RetryReason, number>
}

export function poolResilience (state: SharedState, pools: readonly PoolRef[]): PoolResilience[] {
  return pools.map((pool) => {
    const p = (field: number): number => state.pool(pool.index, field)
    const retries = {} as Record<RetryReason, number>
    RETRY_REASONS.forEach((reason, i) => { retries[reason] = p(L.P_RETRIES + i) >>> 0 })
    return {
      name: pool.name,
      panic: p(L.P_PANIC) === 1,
      panicTransitions: p(L.P_PANIC_TRANSITIONS) >>> 0,
      queueWaiting: Math.max(0, p(L.P_QUEUE_WAITING)),
      queueTimeouts: p(L.P_QUEUE_TIMEOUTS) >>> 0,
      queueFull: p(L.P_QUEUE_FULL) >>> 0,
      retryBudgetDenied: p(L.P_RETRY_BUDGET_DENIED) >>> 0,
      retries,
    }
  })
}
