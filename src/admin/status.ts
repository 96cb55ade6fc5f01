/**
 * GET /api/status: one JSON snapshot of everything the dashboard shows.
 * Counters are the sampler's 64-bit totals (see ./totals); gauges are read
 * live from shared memory.
 */
import { listenerJson, certificateJson, hasTlsStatus, type ListenerJson, type CertificateJson } from '../tls/status'
import * as L from '../shared/layout'
import type { UpstreamStatus, ResponsesByClass } from '../health/status'
import type { CounterTotals } from './totals'
import type { AdminTarget } from './target'
import { version } from '../version'
import type { ClusterStatusJson } from '../cluster/node'

export type Health = 'up' | 'down' | 'draining'

export interface UpstreamTotalsJson {
  requests: number
  failures: number
  retries: number
  healthTransitions: number
  /** Responses received from this upstream, by status class. */
  responses: ResponsesByClass
  /** Answers the balancer made itself for requests sent toward this upstream (502 connect failure, 504 timeout, ...). */
  localResponses: { '4xx': number, '5xx': number }
  /** Client request bytes of the requests it served, and response bytes relayed from it. */
  requestBytes: number
  responseBytes: number
  /** Sum of response-head latency (ms) and how many responses it covers: mean = sum / count. */
  latencySumMs: number
  latencyCount: number
  /** Response-head latency histogram: non-cumulative counts per bound of `latencyBoundsMs` (top level), last one +Inf. */
  latencyBuckets: number[]
  /** Estimated from latencyBuckets (linear within a bucket, as Prometheus' histogram_quantile), since start; null without responses. */
  latencyMs: Quantiles
}

export interface Quantiles { p50: number | null, p95: number | null, p99: number | null }

export interface UpstreamJson extends UpstreamStatus {
  health: Health
  /** Milliseconds in the current health/draining state (as seen by the sampler, to within a second). */
  inStateMs: number
  totals: UpstreamTotalsJson
}

export interface WorkerJson {
  slot: number
  threadId: number
  openConnections: number
  requests: number
  loopLagMs: number
  /** This thread's V8 heap in use (updated once a second). */
  heapUsedBytes: number
}

export interface StatusJson {
  version: string
  /** Upper bounds (ms) of every latency/duration histogram's buckets; each has one more, +Inf. */
  latencyBoundsMs: readonly number[]
  startedAt: string
  uptimeMs: number
  mode: 'sequential' | 'workers'
  /** Configured worker threads (0 = sequential). */
  workerCount: number
  upstreams: UpstreamJson[]
  workers: WorkerJson[]
  /** Every listener with its connection, TLS handshake and PROXY protocol counters (src/tls/status.ts). */
  listeners: ListenerJson[]
  /** Certificates in use (files, ACME, self-signed fallback) with their expiry. */
  certificates: CertificateJson[]
  rateLimit: { enabled: boolean, tableSize: number, slotsUsed: number, evictions: number, tableFull: number, limited: number }
  cache: { enabled: boolean, bytes: number, entries: number, hits: number, misses: number }
  /** Redis-backed cluster (config.cluster): live instances, Redis state, failure mode; null when off. */
  cluster: ClusterStatusJson | null
  totals: {
    /** Client requests received by all serving threads. */
    requests: number
    /** Requests sent to upstreams, retries included. */
    upstreamRequests: number
    /** Every response clients received, relayed or answered locally, by status class. */
    responses: ResponsesByClass
    /** The same split by who made the status code: relayed from an upstream, or the balancer's own answer (errors, cache). */
    responsesBySource: { upstream: ResponsesByClass, local: ResponsesByClass }
    /** Responses received from upstreams (what `responses` meant before 0.2). */
    upstreamResponses: ResponsesByClass
    /** Request bytes read from clients (head and body) and response bytes written to them. */
    requestBytes: number
    responseBytes: number
    /** Client-facing duration, request head to last response byte: histogram (see latencyBoundsMs) and quantiles since start. */
    durationBuckets: number[]
    durationSumMs: number
    durationMs: Quantiles
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

/**
 * The q-quantile of a histogram given as non-cumulative bucket counts over
 * `bounds` (+Inf last), interpolated linearly within its bucket from the
 * previous bound (0 for the first), as Prometheus' histogram_quantile does;
 * a quantile in the +Inf bucket reads as the highest bound. null when empty.
 */
export function quantile (buckets: ArrayLike<number>, bounds: readonly number[], q: number): number | null {
  let total = 0
  for (let i = 0; i < buckets.length; i++) total += buckets[i]
  if (total === 0) return null
  const rank = q * total
  let cumulative = 0
  for (let i = 0; i < buckets.length; i++) {
    const count = buckets[i]
    if (cumulative + count >= rank && count > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1]
      const lower = i === 0 ? 0 : bounds[i - 1]
      return lower + (bounds[i] - lower) * ((rank - cumulative) / count)
    }
    cumulative += count
  }
  return bounds[bounds.length - 1]
}

function quantiles (buckets: ArrayLike<number>): Quantiles {
  const bounds = L.LATENCY_BOUNDS_MS
  const round = (v: number | null): number | null => v === null ? null : Math.round(v * 1000) / 1000
  return { p50: round(quantile(buckets, bounds, 0.5)), p95: round(quantile(buckets, bounds, 0.95)), p99: round(quantile(buckets, bounds, 0.99)) }
}

const BUCKETS = L.LATENCY_BOUNDS_MS.length + 1

/** `totals` must have been sampled just before. */
export function buildStatus (lb: AdminTarget, totals: CounterTotals): StatusJson {
  const state = lb.state
  const upstreams = lb.upstreamStatus().map((status): UpstreamJson => {
    const t = (field: number): number => totals.upstream(status.address, field)
    const latencyBuckets = Array.from({ length: BUCKETS }, (_, b) => t(L.U_LATENCY_BUCKETS + b))
    return {
      ...status,
      health: status.draining ? 'draining' : status.healthy ? 'up' : 'down',
      inStateMs: Math.max(0, Date.now() - totals.upstreamStateSince(status.address)),
      totals: {
        requests: t(L.U_REQUESTS),
        failures: t(L.U_FAILURES),
        retries: t(L.U_RETRIES),
        healthTransitions: t(L.U_HEALTH_TRANSITIONS),
        responses: classes((c) => t(L.U_STATUS_1XX + c)),
        localResponses: { '4xx': t(L.U_LOCAL_4XX), '5xx': t(L.U_LOCAL_5XX) },
        requestBytes: totals.upstreamBytes(status.address, L.U_REQUEST_BYTES),
        responseBytes: totals.upstreamBytes(status.address, L.U_RESPONSE_BYTES),
        latencySumMs: t(L.U_LATENCY_SUM_US) / 1000,
        latencyCount: latencyBuckets.reduce((a, b) => a + b, 0),
        latencyBuckets,
        latencyMs: quantiles(latencyBuckets),
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
      heapUsedBytes: (state.worker(slot, L.W_HEAP_USED_KB) >>> 0) * 1024,
    })
  }

  const h = (field: number): number => totals.header(field)
  // process-wide: monotonic across reloads that remove upstreams and across worker restarts
  const all = (field: number): number => totals.upstreamAll(field)
  const w = (field: number): number => totals.allWorkersTotal(field)
  const bySource = (source: number): ResponsesByClass => classes((c) => w(L.W_RESPONSES + source * 5 + c))
  const upstreamSide = bySource(L.SOURCE_UPSTREAM)
  const local = bySource(L.SOURCE_LOCAL)
  const durationBuckets = Array.from({ length: BUCKETS }, (_, b) => w(L.W_DURATION_BUCKETS + b))
  return {
    version,
    latencyBoundsMs: L.LATENCY_BOUNDS_MS,
    startedAt: new Date(lb.startedAt).toISOString(),
    uptimeMs: Date.now() - lb.startedAt,
    mode: lb.mode,
    workerCount: lb.config.workers,
    upstreams,
    workers,
    listeners: hasTlsStatus(lb) ? listenerJson(lb) : [],
    certificates: hasTlsStatus(lb) ? certificateJson(lb) : [],
    rateLimit: {
      enabled: lb.config.rateLimit !== undefined,
      tableSize: state.rateTableSlots,
      slotsUsed: state.header(L.H_RATE_SLOTS_USED) >>> 0,
      evictions: h(L.H_RATE_EVICTIONS),
      tableFull: h(L.H_RATE_TABLE_FULL),
      limited: h(L.H_RATE_LIMITED),
    },
    cache: {
      enabled: lb.config.cache !== undefined,
      bytes: state.header(L.H_CACHE_BYTES) >>> 0,
      entries: state.header(L.H_CACHE_ENTRIES) >>> 0,
      hits: h(L.H_CACHE_HITS),
      misses: h(L.H_CACHE_MISSES),
    },
    cluster: lb.cluster?.status() ?? null,
    totals: {
      requests: w(L.W_REQUESTS),
      upstreamRequests: all(L.U_REQUESTS),
      responses: classes((c) => w(L.W_RESPONSES + c) + w(L.W_RESPONSES + 5 + c)),
      responsesBySource: { upstream: upstreamSide, local },
      upstreamResponses: classes((c) => all(L.U_STATUS_1XX + c)),
      requestBytes: totals.allWorkersBytes(L.W_REQUEST_BYTES),
      responseBytes: totals.allWorkersBytes(L.W_RESPONSE_BYTES),
      durationBuckets,
      durationSumMs: w(L.W_DURATION_SUM_US) / 1000,
      durationMs: quantiles(durationBuckets),
      upstreamFailures: all(L.U_FAILURES),
      retries: all(L.U_RETRIES),
      connectionsAccepted: h(L.H_CONNECTIONS_ACCEPTED),
      rateLimited: h(L.H_RATE_LIMITED),
      firewallBlocked: h(L.H_FIREWALL_BLOCKED),
      protocolErrors: h(L.H_PROTOCOL_ERRORS),
      workerRestarts: h(L.H_WORKER_RESTARTS),
      stickyHits: h(L.H_STICKY_HITS),
    },
  }
}
