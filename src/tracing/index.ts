/**
 * Tracing as the request path sees it: a thread's tracer after a (re)load.
 * The OpenTelemetry SDK and its OTLP exporter are loaded only when the
 * configuration has a `tracing` section: without one, no thread (nor the
 * command line, nor `--check`) pays for loading them.
 */
import type { TracingConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import type { RequestTracer } from './tracer'

/** Null when off; the current tracer when nothing it exports with changed; else a new one (the old one flushed). */
export function tracingFor (config: TracingConfig | undefined, current: RequestTracer | null, state: SharedState): RequestTracer | null {
  if (current !== null && config !== undefined && current.config.otlpEndpoint === config.otlpEndpoint &&
    current.config.serviceName === config.serviceName && current.config.sampleRatio === config.sampleRatio) return current
  if (current !== null) void current.shutdown()
  if (config === undefined) return null
  const { RequestTracer: Tracer } = require('./tracer') as typeof import('./tracer')
  return new Tracer(config, state)
}
