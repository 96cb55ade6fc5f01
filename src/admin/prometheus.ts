/**
 * /metrics, rendered by prom-client (Prometheus text exposition format 0.0.4).
 *
 * Why prom-client: it is what Node operators and their tooling expect; it
 * brings the standard process and Node.js families (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `process_open_fds`, heap, GC) and the
 * escaping and ordering rules of the format, tested by many users, instead of
 * a writer of our own.
 *
 * The data path still pays nothing for it: every number lives in the shared
 * buffer, bumped with one Atomics.add by whichever thread serves the request,
 * and prom-client only sees it through `collect` callbacks that run when
 * someone scrapes. No prom-client object is touched per request and none
 * exists in the worker threads.
 *
 * Counters come from CounterTotals (64-bit, monotonic; sampled by the caller
 * just before rendering); gauges are read live.
 *
 * Adding a family (other modules do it the same way):
 *
 *   metrics.counter('switchyard_x_total', 'What it counts.', ['upstream'], (view, emit) => {
 *     for (const entry of view.table) emit({ upstream: entry.address }, view.totals.upstream(entry.address, L.U_X))
 *   })
 *
 * Naming (https://prometheus.io/docs/practices/naming/): base units
 * (`_seconds`, `_bytes`), counters end in `_total`, and one label name for a
 * serving thread in every family: `worker` (the worker slot; in sequential
 * mode slot 0 is the primary thread, which serves).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import * as L from '../shared/layout'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { CounterTotals } from './totals'
import { upstreamKey } from '../routing/pools'

export const CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE

export interface MetricsInfo {
  version: string
  mode: string
  startedAtMs: number
}

/** What a collect callback reads: everything is sampled or live at scrape time. */
export interface ScrapeView {
  readonly state: SharedState
  /** The upstream table in force. */
  readonly table: readonly UpstreamEntry[]
  readonly totals: CounterTotals
  readonly info: MetricsInfo | null
}

export type Labels = Record<string, string>
/** Report one series of a counter or gauge family. */
export type Emit = (labels: Labels, value: number) => void
/**
 * Report one series of a histogram family: `buckets[i]` is the NON-cumulative
 * count for upper bound `bounds[i]`, with one extra last element for +Inf.
 */
export type EmitHistogram = (labels: Labels, buckets: ArrayLike<number>, sum: number) => void

interface SampleValue { value: number, labels: Record<string, string | number>, metricName: string }

/**
 * A histogram whose buckets are already counted in shared memory. prom-client's
 * Histogram only grows by observe(); its Registry renders any metric object
 * that answers get() with { name, help, type, values, aggregator }, which is
 * what this is.
 */
class SampledHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly labelNames: string[]
  private readonly bounds: readonly number[]

  constructor (readonly name: string, readonly help: string, labelNames: string[], bounds: readonly number[],
    private readonly collectFn: (emit: EmitHistogram) => void) {
    this.labelNames = labelNames
    this.bounds = bounds
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: SampleValue[] }> {
    const values: SampleValue[] = []
    const bucketName = `${this.name}_bucket`
    this.collectFn((labels, buckets, sum) => {
      let cumulative = 0
      for (let b = 0; b < this.bounds.length; b++) {
        cumulative += buckets[b]
        values.push({ metricName: bucketName, labels: { ...labels, le: this.bounds[b] }, value: cumulative })
      }
      cumulative += buckets[this.bounds.length]
      values.push({ metricName: bucketName, labels: { ...labels, le: '+Inf' }, value: cumulative })
      values.push({ metricName: `${this.name}_sum`, labels, value: sum })
      values.push({ metricName: `${this.name}_count`, labels, value: cumulative })
    })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {}
}

/**
 * The process and Node.js families of prom-client, registered once per
 * process: CPU, memory and file descriptors are the whole process's (every
 * worker thread included); the nodejs_* heap, GC and event-loop families
 * describe the thread that renders /metrics, the primary.
 */
let processRegistry: Registry | null = null
function processMetrics (): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
    // gauges named *_total break the naming rule (promtool flags them); each is
    // the sum of its family without the suffix, split by `type`, which stays
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      processRegistry.removeSingleMetric(name)
    }
  }
  return processRegistry
}

export class SwitchyardMetrics {
  readonly registry = new Registry()
  private readonly view: () => ScrapeView

  /** `view` is called once per collect callback, at scrape time. */
  constructor (view: () => ScrapeView) {
    this.view = view
  }

  counter (name: string, help: string, labelNames: string[], collect: (view: ScrapeView, emit: Emit) => void): void {
    const view = this.view
    // eslint-disable-next-line no-new -- registered with the registry by its constructor
    new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect (this: Counter) {
        this.reset()
        collect(view(), (labels, value) => this.inc(labels, value))
      },
    })
  }

  gauge (name: string, help: string, labelNames: string[], collect: (view: ScrapeView, emit: Emit) => void): void {
    const view = this.view
    // eslint-disable-next-line no-new -- registered with the registry by its constructor
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect (this: Gauge) {
        this.reset()
        collect(view(), (labels, value) => this.set(labels, value))
      },
    })
  }

  /** `bounds` in the family's unit (seconds), increasing, without +Inf. */
  histogram (name: string, help: string, labelNames: string[], bounds: readonly number[],
    collect: (view: ScrapeView, emit: EmitHistogram) => void): void {
    const histogram = new SampledHistogram(name, help, labelNames, bounds, (emit) => collect(this.view(), emit))
    this.registry.registerMetric(histogram as unknown as Metric)
  }

  /** The whole exposition: switchyard's families, then the process's. */
  async render (): Promise<string> {
    const [own, proc] = await Promise.all([this.registry.metrics(), processMetrics().metrics()])
    // prom-client 15 writes NaN as `Nan` (e.g. nodejs_eventloop_lag_mean_seconds
    // before its first sample); the format spells it `NaN`
    return (own + '\n' + proc).replace(/ Nan$/gm, ' NaN')
  }
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const SOURCES = [[L.SOURCE_UPSTREAM, 'upstream'], [L.SOURCE_LOCAL, 'local']] as const
export const LATENCY_BOUNDS_SECONDS = L.LATENCY_BOUNDS_MS.map((ms) => ms / 1000)

/** Worker slots that a thread holds now. */
function liveWorkerSlots (state: SharedState): number[] {
  const slots: number[] = []
  for (let slot = 0; slot < L.MAX_WORKER_SLOTS; slot++) {
    if (state.worker(slot, L.W_THREAD_ID) !== 0) slots.push(slot)
  }
  return slots
}

/** Register every core family. Modules with their own counters add theirs next to these. */
export function registerCoreFamilies (m: SwitchyardMetrics): void {
  m.gauge('switchyard_info', 'Build and mode of this switchyard (always 1).', ['version', 'mode'], (v, emit) => {
    if (v.info !== null) emit({ version: v.info.version, mode: v.info.mode }, 1)
  })
  m.gauge('switchyard_start_time_seconds', 'Start time of this switchyard since the Unix epoch in seconds.', [], (v, emit) => {
    if (v.info !== null) emit({}, v.info.startedAtMs / 1000)
  })

  // ---- every response a client received (counted by the thread that wrote it) --
  m.counter('switchyard_requests_total', 'Responses clients received, by status class and by who made the status code: ' +
    'source="upstream" relayed from an upstream, source="local" answered by switchyard itself (errors such as 502/503/504/429/403, the cache).',
  ['class', 'source'], (v, emit) => {
    for (const [source, name] of SOURCES) {
      for (let c = 0; c < CLASSES.length; c++) emit({ class: CLASSES[c], source: name }, v.totals.allWorkersTotal(L.W_RESPONSES + source * 5 + c))
    }
  })
  m.histogram('switchyard_request_duration_seconds', 'Time from receiving a request head to writing the last byte of its response, as the client sees it.',
    [], LATENCY_BOUNDS_SECONDS, (v, emit) => {
      const buckets = new Float64Array(L.LATENCY_BOUNDS_MS.length + 1)
      for (let b = 0; b < buckets.length; b++) buckets[b] = v.totals.allWorkersTotal(L.W_DURATION_BUCKETS + b)
      emit({}, buckets, v.totals.allWorkersTotal(L.W_DURATION_SUM_US) / 1e6)
    })
  m.counter('switchyard_request_bytes_total', 'Request bytes read from clients, head and body, of requests that got a response.', [],
    (v, emit) => emit({}, v.totals.allWorkersBytes(L.W_REQUEST_BYTES)))
  m.counter('switchyard_response_bytes_total', 'Bytes of responses written to clients (tunnels after a 101 excluded).', [],
    (v, emit) => emit({}, v.totals.allWorkersBytes(L.W_RESPONSE_BYTES)))

  // ---- per upstream (an address in two pools is two upstreams: label pool, totals by upstreamKey) ----
  m.counter('switchyard_upstream_responses_total', 'Responses received from each upstream, by status class.', ['upstream', 'pool', 'class'], (v, emit) => {
    for (const entry of v.table) {
      for (let c = 0; c < CLASSES.length; c++) emit({ upstream: entry.address, pool: entry.pool, class: CLASSES[c] }, v.totals.upstream(upstreamKey(entry), L.U_STATUS_1XX + c))
    }
  })
  const upstreamCounter = (name: string, field: number, help: string): void => {
    m.counter(name, help, ['upstream', 'pool'], (v, emit) => {
      for (const entry of v.table) emit({ upstream: entry.address, pool: entry.pool }, v.totals.upstream(upstreamKey(entry), field))
    })
  }
  upstreamCounter('switchyard_upstream_requests_total', L.U_REQUESTS, 'Requests sent to each upstream, retries included.')
  upstreamCounter('switchyard_upstream_failures_total', L.U_FAILURES, 'Connect failures, resets and timeouts per upstream.')
  upstreamCounter('switchyard_upstream_retries_total', L.U_RETRIES, 'Requests retried on another upstream after a failure on this one.')
  m.histogram('switchyard_upstream_response_seconds', 'Time from sending a request to receiving the response head, per upstream.',
    ['upstream', 'pool'], LATENCY_BOUNDS_SECONDS, (v, emit) => {
      const buckets = new Float64Array(L.LATENCY_BOUNDS_MS.length + 1)
      for (const entry of v.table) {
        for (let b = 0; b < buckets.length; b++) buckets[b] = v.totals.upstream(upstreamKey(entry), L.U_LATENCY_BUCKETS + b)
        emit({ upstream: entry.address, pool: entry.pool }, buckets, v.totals.upstream(upstreamKey(entry), L.U_LATENCY_SUM_US) / 1e6)
      }
    })
  m.counter('switchyard_upstream_local_responses_total', 'Answers switchyard made itself for requests sent toward each upstream (502 connect failure, 504 timeout, ...).',
    ['upstream', 'pool', 'class'], (v, emit) => {
      for (const entry of v.table) {
        emit({ upstream: entry.address, pool: entry.pool, class: '4xx' }, v.totals.upstream(upstreamKey(entry), L.U_LOCAL_4XX))
        emit({ upstream: entry.address, pool: entry.pool, class: '5xx' }, v.totals.upstream(upstreamKey(entry), L.U_LOCAL_5XX))
      }
    })
  const upstreamBytes = (name: string, field: number, help: string): void => {
    m.counter(name, help, ['upstream', 'pool'], (v, emit) => {
      for (const entry of v.table) emit({ upstream: entry.address, pool: entry.pool }, v.totals.upstreamBytes(upstreamKey(entry), field))
    })
  }
  upstreamBytes('switchyard_upstream_request_bytes_total', L.U_REQUEST_BYTES, 'Client request bytes of the requests each upstream served.')
  upstreamBytes('switchyard_upstream_response_bytes_total', L.U_RESPONSE_BYTES, 'Response bytes relayed from each upstream to clients.')
  upstreamCounter('switchyard_health_transitions_total', L.U_HEALTH_TRANSITIONS, 'Changes between healthy and unhealthy per upstream.')

  const upstreamGauge = (name: string, help: string, read: (state: SharedState, slot: number) => number): void => {
    m.gauge(name, help, ['upstream', 'pool'], (v, emit) => {
      for (const entry of v.table) emit({ upstream: entry.address, pool: entry.pool }, read(v.state, entry.slot))
    })
  }
  upstreamGauge('switchyard_upstream_healthy', '1 when the upstream passes health checks, 0 when ejected.',
    (state, slot) => state.upstream(slot, L.U_HEALTHY) === 1 ? 1 : 0)
  upstreamGauge('switchyard_upstream_draining', '1 when an operator drained the upstream (no new requests).',
    (state, slot) => state.upstream(slot, L.U_ADMIN_STATE) === L.ADMIN_DRAINING ? 1 : 0)
  // gauges bumped up and down by different threads can read -1 for an instant
  upstreamGauge('switchyard_upstream_active_requests', 'Requests in flight to the upstream.',
    (state, slot) => Math.max(0, state.upstream(slot, L.U_ACTIVE_REQUESTS)))
  upstreamGauge('switchyard_upstream_open_sockets', 'Sockets open to the upstream, busy or idle in a pool.',
    (state, slot) => Math.max(0, state.upstream(slot, L.U_OPEN_SOCKETS)))

  // ---- per worker slot (label `worker` everywhere) ------------------------------
  m.gauge('switchyard_open_connections', 'Client connections open on each worker.', ['worker'], (v, emit) => {
    for (const slot of liveWorkerSlots(v.state)) emit({ worker: String(slot) }, Math.max(0, v.state.worker(slot, L.W_OPEN_CONNECTIONS)))
  })
  m.counter('switchyard_worker_requests_total', 'Client requests received by the thread now in each worker slot.', ['worker'], (v, emit) => {
    for (const slot of liveWorkerSlots(v.state)) emit({ worker: String(slot) }, v.totals.worker(slot, L.W_REQUESTS))
  })
  m.gauge('switchyard_worker_heap_used_bytes', 'V8 heap in use by each serving thread (its own isolate; nodejs_heap_* is the primary\'s).', ['worker'], (v, emit) => {
    for (const slot of liveWorkerSlots(v.state)) emit({ worker: String(slot) }, (v.state.worker(slot, L.W_HEAP_USED_KB) >>> 0) * 1024)
  })
  m.gauge('switchyard_event_loop_lag_seconds', 'p99 event-loop delay of each serving thread over the last second.', ['worker'], (v, emit) => {
    for (const slot of liveWorkerSlots(v.state)) emit({ worker: String(slot) }, (v.state.worker(slot, L.W_LOOP_LAG_US) >>> 0) / 1e6)
  })

  // ---- global -----------------------------------------------------------------
  const headerCounter = (name: string, field: number, help: string): void => {
    m.counter(name, help, [], (v, emit) => emit({}, v.totals.header(field)))
  }
  const headerGauge = (name: string, help: string, read: (v: ScrapeView) => number): void => {
    m.gauge(name, help, [], (v, emit) => emit({}, read(v)))
  }
  headerCounter('switchyard_rate_limited_total', L.H_RATE_LIMITED, 'Requests answered 429 by the rate limiter.')
  headerCounter('switchyard_firewall_blocked_total', L.H_FIREWALL_BLOCKED, 'Requests answered 403 by the firewall.')
  headerCounter('switchyard_protocol_errors_total', L.H_PROTOCOL_ERRORS, 'Requests rejected by the HTTP parser.')
  headerCounter('switchyard_worker_restarts_total', L.H_WORKER_RESTARTS, 'Worker threads replaced after a crash.')
  headerCounter('switchyard_connections_accepted_total', L.H_CONNECTIONS_ACCEPTED, 'Client connections accepted.')
  headerCounter('switchyard_sticky_hits_total', L.H_STICKY_HITS, 'Requests routed by a valid sticky-session cookie.')
  headerCounter('switchyard_rate_table_evictions_total', L.H_RATE_EVICTIONS, 'Rate-limit slots taken over from another live key.')
  headerCounter('switchyard_rate_table_full_total', L.H_RATE_TABLE_FULL, 'Rate-limit lookups that found no free slot.')
  headerGauge('switchyard_rate_table_slots_used', 'Rate-limit table slots claimed.', (v) => v.state.header(L.H_RATE_SLOTS_USED) >>> 0)
  headerGauge('switchyard_rate_table_slots', 'Rate-limit table size (0 when rate limiting is off).', (v) => v.state.rateTableSlots)
  headerCounter('switchyard_cache_hits_total', L.H_CACHE_HITS, 'Responses served from the cache.')
  headerCounter('switchyard_cache_misses_total', L.H_CACHE_MISSES, 'Cacheable requests not found in the cache.')
  headerGauge('switchyard_cache_bytes', 'Bytes held by the response cache.', (v) => v.state.header(L.H_CACHE_BYTES) >>> 0)
  headerGauge('switchyard_cache_entries', 'Entries held by the response cache.', (v) => v.state.header(L.H_CACHE_ENTRIES) >>> 0)
  m.counter('switchyard_tracing_spans_total', 'Spans of sampled requests: exported to the collector, or dropped (export failed, or too many waiting).', ['outcome'], (v, emit) => {
    emit({ outcome: 'exported' }, v.state.tracing(L.T_SPANS_EXPORTED))
    emit({ outcome: 'dropped' }, v.state.tracing(L.T_SPANS_DROPPED))
  })
}

/** A registry with every core family, reading `view` at each scrape. */
export function createMetrics (view: () => ScrapeView): SwitchyardMetrics {
  const m = new SwitchyardMetrics(view)
  registerCoreFamilies(m)
  return m
}

/** Render once (tests, one-off): the caller sampled `totals` just before. */
export async function renderMetrics (state: SharedState, table: readonly UpstreamEntry[], totals: CounterTotals, info: MetricsInfo | null = null): Promise<string> {
  return await createMetrics(() => ({ state, table, totals, info })).render()
}
