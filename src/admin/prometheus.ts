/**
 * /metrics in the Prometheus text exposition format 0.0.4, written by hand.
 *
 * Why not prom-client: every number already lives in the shared buffer, where
 * the data path bumps it with one Atomics.add. A client library would want
 * its own registry objects updated from each thread (more work per request,
 * or a second copy to keep in sync). Rendering straight from shared memory
 * costs the data path nothing and happens only when someone scrapes.
 *
 * Counters come from CounterTotals (64-bit, monotonic); gauges are read live.
 * Format rules followed (https://prometheus.io/docs/instrumenting/exposition_formats/):
 * one `# HELP` and one `# TYPE` per family before its samples, all samples of
 * a family together, label values escaped (\\ \" \n), histogram buckets
 * cumulative with `le="+Inf"` equal to `_count`.
 */
import type { RouteStatus } from '../routing/status'
import { upstreamKey } from '../routing/pools'
import * as L from '../shared/layout'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { CounterTotals } from './totals'

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export type MetricType = 'counter' | 'gauge' | 'histogram'

export function escapeLabelValue (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function escapeHelp (text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

export function formatValue (value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

/** Accumulates lines; one family at a time. */
export class TextWriter {
  private readonly lines: string[] = []

  family (name: string, type: MetricType, help: string): this {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
    return this
  }

  sample (name: string, labels: Record<string, string> | null, value: number): this {
    let text = name
    if (labels !== null) {
      const parts: string[] = []
      for (const key of Object.keys(labels)) parts.push(`${key}="${escapeLabelValue(labels[key])}"`)
      if (parts.length > 0) text += `{${parts.join(',')}}`
    }
    this.lines.push(`${text} ${formatValue(value)}`)
    return this
  }

  toString (): string {
    return this.lines.length === 0 ? '' : this.lines.join('\n') + '\n'
  }
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const BOUNDS_SECONDS = L.LATENCY_BOUNDS_MS.map((ms) => formatValue(ms / 1000))

export interface MetricsInfo {
  version: string
  mode: string
  startedAtMs: number
}

/**
 * Render every metric. The caller samples `totals` first so counters are
 * current. `table` is the live upstream table; `info` adds switchyard_info
 * and the start time when given.
 */
export function renderMetrics (state: SharedState, table: readonly UpstreamEntry[], totals: CounterTotals, info: MetricsInfo | null = null, routes: readonly RouteStatus[] = []): string {
  const w = new TextWriter()
  const up = (entry: UpstreamEntry): Record<string, string> => ({ upstream: entry.address, pool: entry.pool })

  if (info !== null) {
    w.family('switchyard_info', 'gauge', 'Build and mode of this switchyard (always 1).')
      .sample('switchyard_info', { version: info.version, mode: info.mode }, 1)
    w.family('switchyard_start_time_seconds', 'gauge', 'Start time of this switchyard since the Unix epoch in seconds.')
      .sample('switchyard_start_time_seconds', null, info.startedAtMs / 1000)
  }

  // ---- per upstream -----------------------------------------------------------
  w.family('switchyard_requests_total', 'counter', 'Responses received from each upstream, by status class.')
  for (const entry of table) {
    for (let c = 0; c < CLASSES.length; c++) {
      w.sample('switchyard_requests_total', { upstream: entry.address, pool: entry.pool, class: CLASSES[c] }, totals.upstream(upstreamKey(entry), L.U_STATUS_1XX + c))
    }
  }
  const upstreamCounter = (name: string, field: number, help: string): void => {
    w.family(name, 'counter', help)
    for (const entry of table) w.sample(name, up(entry), totals.upstream(upstreamKey(entry), field))
  }
  upstreamCounter('switchyard_upstream_requests_total', L.U_REQUESTS, 'Requests sent to each upstream, retries included.')
  upstreamCounter('switchyard_upstream_failures_total', L.U_FAILURES, 'Connect failures, resets and timeouts per upstream.')
  upstreamCounter('switchyard_upstream_retries_total', L.U_RETRIES, 'Requests retried on another upstream after a failure on this one.')

  w.family('switchyard_upstream_response_seconds', 'histogram', 'Time from sending a request to receiving the response head, per upstream.')
  for (const entry of table) {
    let cumulative = 0
    for (let b = 0; b <= L.LATENCY_BOUNDS_MS.length; b++) {
      cumulative += totals.upstream(upstreamKey(entry), L.U_LATENCY_BUCKETS + b)
      const le = b < L.LATENCY_BOUNDS_MS.length ? BOUNDS_SECONDS[b] : '+Inf'
      w.sample('switchyard_upstream_response_seconds_bucket', { upstream: entry.address, pool: entry.pool, le }, cumulative)
    }
    w.sample('switchyard_upstream_response_seconds_sum', up(entry), totals.upstream(upstreamKey(entry), L.U_LATENCY_SUM_US) / 1e6)
    w.sample('switchyard_upstream_response_seconds_count', up(entry), cumulative)
  }

  upstreamCounter('switchyard_health_transitions_total', L.U_HEALTH_TRANSITIONS, 'Changes between healthy and unhealthy per upstream.')

  const upstreamGauge = (name: string, help: string, read: (slot: number) => number): void => {
    w.family(name, 'gauge', help)
    for (const entry of table) w.sample(name, up(entry), read(entry.slot))
  }
  upstreamGauge('switchyard_upstream_healthy', '1 when the upstream passes health checks, 0 when ejected.',
    (slot) => state.upstream(slot, L.U_HEALTHY) === 1 ? 1 : 0)
  upstreamGauge('switchyard_upstream_draining', '1 when an operator drained the upstream (no new requests).',
    (slot) => state.upstream(slot, L.U_ADMIN_STATE) === L.ADMIN_DRAINING ? 1 : 0)
  // gauges bumped up and down by different threads can read -1 for an instant
  upstreamGauge('switchyard_upstream_active_requests', 'Requests in flight to the upstream.',
    (slot) => Math.max(0, state.upstream(slot, L.U_ACTIVE_REQUESTS)))
  upstreamGauge('switchyard_upstream_open_sockets', 'Sockets open to the upstream, busy or idle in a pool.',
    (slot) => Math.max(0, state.upstream(slot, L.U_OPEN_SOCKETS)))

  // ---- per worker slot ----------------------------------------------------------
  const slots: number[] = []
  for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
    if (state.worker(slot, L.W_THREAD_ID) !== 0) slots.push(slot)
  }
  w.family('switchyard_open_connections', 'gauge', 'Client connections open on each worker slot.')
  for (const slot of slots) w.sample('switchyard_open_connections', { worker: String(slot) }, Math.max(0, state.worker(slot, L.W_OPEN_CONNECTIONS)))
  w.family('switchyard_worker_requests_total', 'counter', 'Client requests received by the thread now in each worker slot.')
  for (const slot of slots) w.sample('switchyard_worker_requests_total', { worker: String(slot) }, totals.worker(slot, L.W_REQUESTS))
  w.family('switchyard_event_loop_lag_seconds', 'gauge', 'p99 event-loop delay of each serving thread over the last second.')
  // in sequential mode the one slot is the primary's (it claims it as thread 1)
  const threadLabel = (slot: number): string => info?.mode === 'sequential' ? 'primary' : String(state.worker(slot, L.W_THREAD_ID))
  for (const slot of slots) {
    w.sample('switchyard_event_loop_lag_seconds', { thread: threadLabel(slot) }, (state.worker(slot, L.W_LOOP_LAG_US) >>> 0) / 1e6)
  }

  // ---- global -----------------------------------------------------------------
  const headerCounter = (name: string, field: number, help: string): void => {
    w.family(name, 'counter', help).sample(name, null, totals.header(field))
  }
  headerCounter('switchyard_rate_limited_total', L.H_RATE_LIMITED, 'Requests answered 429 by the rate limiter.')
  headerCounter('switchyard_firewall_blocked_total', L.H_FIREWALL_BLOCKED, 'Requests answered 403 by the firewall.')
  headerCounter('switchyard_protocol_errors_total', L.H_PROTOCOL_ERRORS, 'Requests rejected by the HTTP parser.')
  headerCounter('switchyard_worker_restarts_total', L.H_WORKER_RESTARTS, 'Worker threads replaced after a crash.')
  headerCounter('switchyard_connections_accepted_total', L.H_CONNECTIONS_ACCEPTED, 'Client connections accepted.')
  headerCounter('switchyard_sticky_hits_total', L.H_STICKY_HITS, 'Requests routed by a valid sticky-session cookie.')
  headerCounter('switchyard_rate_table_evictions_total', L.H_RATE_EVICTIONS, 'Rate-limit slots taken over from another live key.')
  headerCounter('switchyard_rate_table_full_total', L.H_RATE_TABLE_FULL, 'Rate-limit lookups that found no free slot.')
  w.family('switchyard_rate_table_slots_used', 'gauge', 'Rate-limit table slots claimed.')
    .sample('switchyard_rate_table_slots_used', null, state.header(L.H_RATE_SLOTS_USED) >>> 0)
  w.family('switchyard_rate_table_slots', 'gauge', 'Rate-limit table size (0 when rate limiting is off).')
    .sample('switchyard_rate_table_slots', null, state.rateTableSlots)
  headerCounter('switchyard_cache_hits_total', L.H_CACHE_HITS, 'Responses served from the cache.')
  headerCounter('switchyard_cache_misses_total', L.H_CACHE_MISSES, 'Cacheable requests not found in the cache.')
  w.family('switchyard_cache_bytes', 'gauge', 'Bytes held by the response cache.')
    .sample('switchyard_cache_bytes', null, state.header(L.H_CACHE_BYTES) >>> 0)
  w.family('switchyard_cache_entries', 'gauge', 'Entries held by the response cache.')
    .sample('switchyard_cache_entries', null, state.header(L.H_CACHE_ENTRIES) >>> 0)

  // ---- routes (src/routing) ----------------------------------------------------------
  if (routes.length > 0) {
    w.family('switchyard_route_requests_total', 'counter', 'Requests matched by each route (uint32 counter in shared memory).')
    for (const r of routes) w.sample('switchyard_route_requests_total', { route: r.name }, r.hits)
  }
  return w.toString()
}
