/**
 * GET /api/status: one JSON snapshot of everything the dashboard shows.
 * Counters are the sampler's 64-bit totals (see ./totals); gauges are read
 * live from shared memory.
 */
import type { PoolStatus, RouteStatus } from '../routing/status'
import * as L from '../shared/layout'
import type { UpstreamStatus, ResponsesByClass } from '../health/status'
import type { CounterTotals } from './totals'
import type { AdminTarget } from './target'
import { version } from '../version'

export type Health = 'up' | 'down' | 'draining'

export interface UpstreamTotalsJson {
  requests: number
  failures: number
  retries: number
  healthTransitions: number
  responses: ResponsesByClass
  /** Sum of response-head latency (ms) and how many responses it covers: mean = sum / count. */
  latencySumMs: number
  latencyCount: number
}

export interface UpstreamJson extends UpstreamStatus {
  health: Health
  totals: UpstreamTotalsJson
}

export interface WorkerJson {
  slot: number
  threadId: number
  openConnections: number
  requests: number
  loopLagMs: number
}

export interface StatusJson {
  version: string
  startedAt: string
  uptimeMs: number
  mode: 'sequential' | 'workers'
  /** Configured worker threads (0 = sequential). */
  workerCount: number
  upstreams: UpstreamJson[]
  /** Pools (upstreams grouped by pool) and routes with their hit counts. */
  pools: PoolStatus[]
  routes: RouteStatus[]
  workers: WorkerJson[]
  rateLimit: { enabled: boolean, tableSize: number, slotsUsed: number, evictions: number, tableFull: number, limited: number }
  cache: { enabled: boolean, bytes: number, entries: number, hits: number, misses: number }
  totals: {
    /** Client requests received by all serving threads. */
    requests: number
    /** Requests sent to upstreams, retries included. */
    upstreamRequests: number
    responses: ResponsesByClass
    upstreamFailures: number
    retries: number
    connectionsAccepted: number
    rateLimited: number
    firewallBlocked: number
    protocolErrors: number
    workerRestarts: number
    stickyHits: number
  }
}

function classes (read: (c: number) => number): ResponsesByClass {
  return { '1xx': read(0), '2xx': read(1), '3xx': read(2), '4xx': read(3), '5xx': read(4) }
}

/** `totals` must have been sampled just before. */
export function buildStatus (lb: AdminTarget, totals: CounterTotals): StatusJson {
  const state = lb.state
  const upstreams = lb.upstreamStatus().map((status): UpstreamJson => {
    const t = (field: number): number => totals.upstream(status.key, field)
    let latencyCount = 0
    for (let b = 0; b <= L.LATENCY_BOUNDS_MS.length; b++) latencyCount += t(L.U_LATENCY_BUCKETS + b)
    return {
      ...status,
      health: status.draining ? 'draining' : status.healthy ? 'up' : 'down',
      totals: {
        requests: t(L.U_REQUESTS),
        failures: t(L.U_FAILURES),
        retries: t(L.U_RETRIES),
        healthTransitions: t(L.U_HEALTH_TRANSITIONS),
        responses: classes((c) => t(L.U_STATUS_1XX + c)),
        latencySumMs: t(L.U_LATENCY_SUM_US) / 1000,
        latencyCount,
      },
    }
  })

  const workers: WorkerJson[] = []
  for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
    const threadId = state.worker(slot, L.W_THREAD_ID)
    if (threadId === 0) continue
    workers.push({
      slot,
      threadId,
      openConnections: Math.max(0, state.worker(slot, L.W_OPEN_CONNECTIONS)),
      requests: totals.worker(slot, L.W_REQUESTS),
      loopLagMs: (state.worker(slot, L.W_LOOP_LAG_US) >>> 0) / 1000,
    })
  }

  const sum = (read: (u: UpstreamJson) => number): number => upstreams.reduce((acc, u) => acc + read(u), 0)
  const h = (field: number): number => totals.header(field)
  return {
    version,
    startedAt: new Date(lb.startedAt).toISOString(),
    uptimeMs: Date.now() - lb.startedAt,
    mode: lb.mode,
    workerCount: lb.config.workers,
    upstreams,
    workers,
    rateLimit: {
      enabled: lb.config.rateLimit !== undefined,
      tableSize: state.rateTableSlots,
      slotsUsed: state.header(L.H_RATE_SLOTS_USED) >>> 0,
      evictions: h(L.H_RATE_EVICTIONS),
      tableFull: h(L.H_RATE_TABLE_FULL),
      limited: h(L.H_RATE_LIMITED),
    },
    pools: lb.poolStatus(),
    routes: lb.routeStatus(),
    cache: {
      enabled: lb.config.cache !== undefined,
      bytes: state.header(L.H_CACHE_BYTES) >>> 0,
      entries: state.header(L.H_CACHE_ENTRIES) >>> 0,
      hits: h(L.H_CACHE_HITS),
      misses: h(L.H_CACHE_MISSES),
    },
    totals: {
      requests: totals.allWorkersTotal(L.W_REQUESTS),
      upstreamRequests: sum((u) => u.totals.requests),
      responses: classes((c) => sum((u) => u.totals.responses[(['1xx', '2xx', '3xx', '4xx', '5xx'] as const)[c]])),
      upstreamFailures: sum((u) => u.totals.failures),
      retries: sum((u) => u.totals.retries),
      connectionsAccepted: h(L.H_CONNECTIONS_ACCEPTED),
      rateLimited: h(L.H_RATE_LIMITED),
      firewallBlocked: h(L.H_FIREWALL_BLOCKED),
      protocolErrors: h(L.H_PROTOCOL_ERRORS),
      workerRestarts: h(L.H_WORKER_RESTARTS),
      stickyHits: h(L.H_STICKY_HITS),
    },
  }
}
