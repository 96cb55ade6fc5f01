/**
 * The per pool resilience families (panic mode, queue, retries), registered
 * next to the core ones and read from the pool blocks of shared memory at
 * scrape time, like them.
 */
import type { SwitchyardMetrics } from './prometheus'
import { RETRY_REASONS, poolResilience } from '../health/pool-status'
import type { PoolRef } from '../proxy/resilience-config'

/** `pools` is called at scrape time: the pools in force (they change on reload). */
export function registerPoolFamilies (m: SwitchyardMetrics, pools: () => readonly PoolRef[]): void {
  const read = (state: Parameters<typeof poolResilience>[0]): ReturnType<typeof poolResilience> => poolResilience(state, pools())
  m.gauge('switchyard_pool_panic', '1 while the pool balances over all its upstreams because too few are healthy (panic mode).', ['pool'], (v, emit) => {
    for (const p of read(v.state)) emit({ pool: p.name }, p.panic ? 1 : 0)
  })
  m.counter('switchyard_pool_panic_transitions_total', 'Switches of the pool into or out of panic mode.', ['pool'], (v, emit) => {
    for (const p of read(v.state)) emit({ pool: p.name }, p.panicTransitions)
  })
  m.gauge('switchyard_queue_waiting', 'Requests waiting for an upstream connection slot (maxConnections).', ['pool'], (v, emit) => {
    for (const p of read(v.state)) emit({ pool: p.name }, p.queueWaiting)
  })
  m.counter('switchyard_queue_rejected_total', 'Requests answered 503 by the queue: full, or timed out.', ['pool', 'reason'], (v, emit) => {
    for (const p of read(v.state)) {
      emit({ pool: p.name, reason: 'full' }, p.queueFull)
      emit({ pool: p.name, reason: 'timeout' }, p.queueTimeouts)
    }
  })
  m.counter('switchyard_retries_total', 'Requests tried again, by the reason of the failed attempt.', ['pool', 'reason'], (v, emit) => {
    for (const p of read(v.state)) for (const reason of RETRY_REASONS) emit({ pool: p.name, reason }, p.retries[reason])
  })
  m.counter('switchyard_retry_budget_exhausted_total', 'Retries not made because the retry budget was spent.', ['pool'], (v, emit) => {
    for (const p of read(v.state)) emit({ pool: p.name }, p.retryBudgetDenied)
  })
}
