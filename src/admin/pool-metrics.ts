/**
 * The per pool resilience metrics (panic mode, queue, retries), rendered after
 * the others on /metrics from shared memory like them.
 */
import { TextWriter } from './prometheus'
import { RETRY_REASONS, type PoolStatus } from '../health/pool-status'

export function renderPoolMetrics (pools: readonly PoolStatus[]): string {
  const w = new TextWriter()
  const family = (name: string, type: 'counter' | 'gauge', help: string, read: (p: PoolStatus) => number): void => {
    w.family(name, type, help)
    for (const p of pools) w.sample(name, { pool: p.name }, read(p))
  }
  family('switchyard_pool_panic', 'gauge', '1 while the pool balances over all its upstreams because too few are healthy (panic mode).', (p) => p.panic ? 1 : 0)
  family('switchyard_pool_panic_transitions_total', 'counter', 'Switches of the pool into or out of panic mode.', (p) => p.panicTransitions)
  family('switchyard_queue_waiting', 'gauge', 'Requests waiting for an upstream connection slot (maxConnections).', (p) => p.queueWaiting)
  w.family('switchyard_queue_rejected_total', 'counter', 'Requests answered 503 by the queue: full, or timed out.')
  for (const p of pools) {
    w.sample('switchyard_queue_rejected_total', { pool: p.name, reason: 'full' }, p.queueFull)
    w.sample('switchyard_queue_rejected_total', { pool: p.name, reason: 'timeout' }, p.queueTimeouts)
  }
  w.family('switchyard_retries_total', 'counter', 'Requests tried again, by the reason of the failed attempt.')
  for (const p of pools) {
    for (const reason of RETRY_REASONS) w.sample('switchyard_retries_total', { pool: p.name, reason }, p.retries[reason])
  }
  family('switchyard_retry_budget_exhausted_total', 'counter', 'Retries not made because the retry budget was spent.', (p) => p.retryBudgetDenied)
  return w.toString()
}
