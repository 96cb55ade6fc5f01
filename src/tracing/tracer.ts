/**
 * Distributed tracing (config.tracing): W3C Trace Context in and out, and
 * OpenTelemetry spans for sampled requests, exported over OTLP/HTTP.
 *
 *   client --traceparent A-->  [ server span S (parent A) ]
 *                              [ client span C1 (parent S) ] --traceparent C1--> upstream 1 (fails)
 *                              [ client span C2 (parent S) ] --traceparent C2--> upstream 2
 *
 * The decision is made once per request, from the trace ID (the incoming
 * one, else a coin): OpenTelemetry's TraceIdRatioBased rule, so hops with the
 * same ratio agree. An incoming "sampled" flag does not force sampling (any
 * client could make the proxy trace every request). A request that is not
 * sampled costs a header lookup and its traceparent/tracestate lines go
 * upstream exactly as received. A sampled one gets a server span and one
 * client span per upstream attempt (a retry is a second client span with
 * `http.request.resend_count`), and the upstream gets a traceparent naming
 * that attempt's span as parent: the request head is built once with a
 * placeholder span ID, overwritten in place before each attempt is sent.
 *
 * The spans are ended into a per-thread BatchSpanProcessor that exports from a
 * timer, off the request path, to the collector with the OTLP/HTTP exporter.
 * At most MAX_PENDING spans wait per thread; past that, and whenever an
 * export fails (collector down), spans are dropped and counted: tracing never
 * holds memory for a collector that does not answer, nor slows a request.
 * With `tracing` absent ctx.tracing is null: one branch per request.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Span } from '@opentelemetry/api'
import { BasicTracerProvider, BatchSpanProcessor, AlwaysOnSampler, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { HeadParser } from '../http/head-parser'
import type { TracingConfig } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { T_SPANS_DROPPED, T_SPANS_EXPORTED } from '../shared/layout'
import { parseHostPort } from '../config/types'
import { skipFields } from '../proxy/request-id'
import { TraceParent, parseTraceParent, sampledByRatio } from './trace-context'
import { version } from '../version'

/** Spans waiting in one thread (queued or being exported) past which new ones are dropped. */
export const MAX_PENDING = 2048
/** How often a thread's batch goes out. */
const EXPORT_DELAY_MS = 500
const EXPORT_TIMEOUT_MS = 5000
const PLACEHOLDER_SPAN_ID = '0000000000000000'
const PARENT_PREFIX = 'traceparent: 00-'

/** Span counts of one tracer (also added to the shared T_* counters). */
export interface SpanCounts {
  exported: number
  dropped: number
}

/** What a traced request exposes (ClientConnection, through Exchange). */
export interface TracedRequest {
  readonly method: string
  readonly target: string
  readonly clientIp: string
  readonly peerIp: string
  readonly status: number
  readonly http10: boolean
  readonly startedAt: number
  readonly requestId: string
  trace: RequestTrace | null
}

/** The exporter, counting what it could not deliver. */
class CountingExporter implements SpanExporter {
  constructor (private readonly inner: SpanExporter, private readonly tracer: RequestTracer) {}

  export (spans: ReadableSpan[], done: (result: { code: number, error?: Error }) => void): void {
    this.inner.export(spans, (result) => {
      this.tracer.settled(spans.length, result.code === 0)
      done(result)
    })
  }

  async shutdown (): Promise<void> { await this.inner.shutdown() }
  async forceFlush (): Promise<void> { if (this.inner.forceFlush !== undefined) await this.inner.forceFlush() }
}

/** In front of the batch processor: bounds what waits, counting what it drops. */
class BoundedProcessor implements SpanProcessor {
  constructor (private readonly inner: SpanProcessor, private readonly tracer: RequestTracer) {}
  onStart (): void {}
  onEnd (span: ReadableSpan): void {
    if (this.tracer.admit()) this.inner.onEnd(span)
  }

  async forceFlush (): Promise<void> { await this.inner.forceFlush() }
  async shutdown (): Promise<void> { await this.inner.shutdown() }
}

/** One sampled request's spans. */
export class RequestTrace {
  readonly server: Span
  /** The current upstream attempt's span, null between attempts. */
  attempt: Span | null = null
  attempts = 0
  readonly traceId: string
  /** The traceparent line in the request head (its span ID is overwritten per attempt). */
  readonly parentLine: string
  /** Offset of that span ID in the request head, -1 until found. */
  private spanIdAt = -1

  constructor (server: Span) {
    this.server = server
    this.traceId = server.spanContext().traceId
    this.parentLine = PARENT_PREFIX + this.traceId + '-' + PLACEHOLDER_SPAN_ID + '-01\r\n'
  }

  /** Step: an upstream attempt starts (connect, send): its client span, and its ID in the head to send. */
  startAttempt (tracer: RequestTracer, req: TracedRequest, entry: UpstreamEntry, head: Buffer | null): void {
    if (this.attempt !== null) this.attempt.end()
    const { host, port } = parseHostPort(entry.address)
    const attributes: Attributes = {
      'http.request.method': req.method,
      'server.address': host,
      'server.port': port,
      'url.full': 'http://' + entry.address + req.target,
      'network.protocol.version': req.http10 ? '1.0' : '1.1',
    }
    if (this.attempts > 0) attributes['http.request.resend_count'] = this.attempts
    this.attempts++
    const span = tracer.tracer.startSpan(req.method, { kind: SpanKind.CLIENT, attributes }, trace.setSpan(ROOT_CONTEXT, this.server))
    this.attempt = span
    if (head === null) return
    if (this.spanIdAt === -1) {
      const at = head.indexOf(PARENT_PREFIX + this.traceId)
      if (at === -1) return
      this.spanIdAt = at + PARENT_PREFIX.length + 33
    }
    head.latin1Write(span.spanContext().spanId, this.spanIdAt)
  }

  /** Step: the attempt failed (a code from the catalogue); a retry may follow. */
  attemptFailed (code: string): void {
    const span = this.attempt
    if (span === null) return
    span.setAttribute('error.type', code)
    span.setStatus({ code: SpanStatusCode.ERROR, message: code })
    span.end()
    this.attempt = null
  }

  /** Step: the request is done (logged): end what is open. */
  end (req: TracedRequest, flag: string): void {
    const status = req.status
    const span = this.attempt
    if (span !== null) {
      if (status > 0 && flag === '-') {
        span.setAttribute('http.response.status_code', status)
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      } else {
        span.setAttribute('error.type', flag)
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
      span.end()
      this.attempt = null
    }
    const server = this.server
    if (status > 0) server.setAttribute('http.response.status_code', status)
    if (flag !== '-') server.setAttribute('switchyard.response_flag', flag)
    // semantic conventions: a server span is an error for 5xx only (4xx is the client's)
    if (status >= 500 || status === 0) {
      server.setAttribute('error.type', status === 0 ? flag : String(status))
      server.setStatus({ code: SpanStatusCode.ERROR })
    }
    server.end()
  }
}

/** One per thread (ctx.tracing), null when tracing is off. */
export class RequestTracer {
  readonly config: TracingConfig
  readonly tracer: ReturnType<BasicTracerProvider['getTracer']>
  private readonly provider: BasicTracerProvider
  private readonly parent = new TraceParent()
  readonly counts: SpanCounts = { exported: 0, dropped: 0 }
  private readonly state: SharedState
  private pending = 0

  constructor (config: TracingConfig, state: SharedState) {
    this.config = config
    this.state = state
    const exporter = new OTLPTraceExporter({ url: config.otlpEndpoint, timeoutMillis: EXPORT_TIMEOUT_MS })
    const batch = new BatchSpanProcessor(new CountingExporter(exporter, this), {
      maxQueueSize: MAX_PENDING,
      maxExportBatchSize: 512,
      scheduledDelayMillis: EXPORT_DELAY_MS,
      exportTimeoutMillis: EXPORT_TIMEOUT_MS,
    })
    this.provider = new BasicTracerProvider({
      // the decision is ours (begin); the SDK records what we start
      sampler: new AlwaysOnSampler(),
      resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.version': version }),
      spanProcessors: [new BoundedProcessor(batch, this)],
    })
    this.tracer = this.provider.getTracer('switchyard', version)
  }

  /** A span may wait for export (false: dropped and counted). */
  admit (): boolean {
    if (this.pending >= MAX_PENDING) {
      this.counts.dropped++
      this.state.addTracing(T_SPANS_DROPPED, 1)
      return false
    }
    this.pending++
    return true
  }

  /** An export finished: `n` spans delivered or lost. */
  settled (n: number, ok: boolean): void {
    this.pending -= n
    if (ok) this.counts.exported += n
    else this.counts.dropped += n
    this.state.addTracing(ok ? T_SPANS_EXPORTED : T_SPANS_DROPPED, n)
  }

  /**
   * Phase: trace. Decide; for a sampled request start its server span (the
   * incoming traceparent, when valid, is its parent and is replaced upstream).
   */
  begin (req: TracedRequest, p: HeadParser): void {
    const parent = this.parent
    const ratio = this.config.sampleRatio
    const incoming = parseTraceParent(p.header('traceparent'), parent)
    const sampled = incoming ? sampledByRatio(parent.traceId, ratio) : ratio >= 1 || (ratio > 0 && Math.random() < ratio)
    if (!sampled) return
    const context = incoming
      ? trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.parentId, traceFlags: TraceFlags.SAMPLED, isRemote: true })
      : ROOT_CONTEXT
    skipFields(p, 'traceparent') // ours goes upstream instead (tracestate is forwarded as received)
    const target = req.target
    const q = target.indexOf('?')
    const attributes: Attributes = {
      'http.request.method': req.method,
      'url.scheme': 'http',
      'url.path': q === -1 ? target : target.slice(0, q),
      'client.address': req.clientIp,
      'network.peer.address': req.peerIp,
      'network.protocol.version': req.http10 ? '1.0' : '1.1',
    }
    if (q !== -1) attributes['url.query'] = target.slice(q + 1)
    const host = p.hostName()
    if (host !== '') attributes['server.address'] = host
    const agent = p.header('user-agent')
    if (agent !== null) attributes['user_agent.original'] = agent
    if (req.requestId !== '') attributes['http.request.header.x-request-id'] = [req.requestId]
    const server = this.tracer.startSpan(req.method, { kind: SpanKind.SERVER, startTime: req.startedAt, attributes }, context)
    req.trace = new RequestTrace(server)
  }

  /** Send what is queued (drain); resolves when done or after `timeoutMs`. */
  async flush (timeoutMs = 2000): Promise<void> {
    await withDeadline(this.provider.forceFlush(), timeoutMs)
  }

  /** Export what is queued and stop (bounded: a collector that does not answer does not hold up an exit). */
  async shutdown (timeoutMs = 2000): Promise<void> {
    await withDeadline(this.provider.shutdown(), timeoutMs)
  }
}

async function withDeadline (work: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([work.catch(() => {}), new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}
