/**
 * Listeners and certificates for /api/status, /metrics and the dashboard:
 * the per-listener counters from shared memory (src/shared/layout.ts,
 * LISTENERS_OFFSET) next to what the primary knows (addresses, certificates).
 * Counters are read as uint32 (they wrap after 2^32 handshakes per listener).
 */
import type { SharedState } from '../shared/state'
import * as L from '../shared/layout'
import type { CertificateStatus } from './manager'

export interface ListenerInfo { name: string, address: string, tls: boolean, httpsRedirect: boolean }

/** What the primary answers about its listeners (Switchyard implements it). */
export interface TlsStatusSource {
  readonly state: SharedState
  listenerStatus (): ListenerInfo[]
  certificateStatus (): CertificateStatus[]
}

export interface ListenerJson extends ListenerInfo {
  openConnections: number
  accepted: number
  handshakes: { ok: number, resumed: number, errors: Record<string, number> } | null
  proxyProtocolRejected: number
  httpsRedirects: number
  /** Connections closed at once because a cap was reached: limits.maxConnections, limits.maxConnectionsPerClient. */
  refused: { maxConnections: number, maxConnectionsPerClient: number }
}

export interface CertificateJson extends CertificateStatus {
  /** Whole days until notAfter (negative once expired). */
  daysLeft: number
}

export function listenerJson (source: TlsStatusSource): ListenerJson[] {
  const state = source.state
  return source.listenerStatus().map((l, i) => ({
    ...l,
    openConnections: state.listener(i, L.L_OPEN_CONNECTIONS),
    accepted: state.listener(i, L.L_ACCEPTED),
    handshakes: l.tls
      ? {
          ok: state.listener(i, L.L_HANDSHAKES_OK),
          resumed: state.listener(i, L.L_HANDSHAKES_RESUMED),
          errors: Object.fromEntries(L.TLS_ERROR_REASONS.map((r, k) => [r, state.listener(i, L.L_HANDSHAKE_ERRORS + k)])),
        }
      : null,
    proxyProtocolRejected: state.listener(i, L.L_PROXY_REJECTED),
    httpsRedirects: state.listener(i, L.L_REDIRECTS),
    refused: { maxConnections: state.listener(i, L.L_REFUSED), maxConnectionsPerClient: state.listener(i, L.L_REFUSED_PER_CLIENT) },
  }))
}

export function certificateJson (source: TlsStatusSource): CertificateJson[] {
  const now = Date.now()
  return source.certificateStatus().map((c) => ({ ...c, daysLeft: Math.floor((c.notAfterMs - now) / 86_400_000) }))
}

/** Whether the admin target can answer (a test double may not). */
export function hasTlsStatus (target: unknown): target is TlsStatusSource {
  return typeof (target as Partial<TlsStatusSource>).listenerStatus === 'function' && typeof (target as Partial<TlsStatusSource>).certificateStatus === 'function'
}

interface MetricsRegistry {
  counter (name: string, help: string, labelNames: string[], collect: (view: { state: SharedState }, emit: (labels: Record<string, string>, value: number) => void) => void): void
  gauge (name: string, help: string, labelNames: string[], collect: (view: { state: SharedState }, emit: (labels: Record<string, string>, value: number) => void) => void): void
}

/** The listener and TLS families of /metrics. */
export function registerTlsFamilies (m: MetricsRegistry, source: TlsStatusSource): void {
  const perListener = (read: (l: ListenerJson, emit: (labels: Record<string, string>, value: number) => void) => void) =>
    (_v: unknown, emit: (labels: Record<string, string>, value: number) => void): void => { for (const l of listenerJson(source)) read(l, emit) }
  m.gauge('switchyard_listener_open_connections', 'Client connections open per listener (TLS handshakes included).', ['listener'],
    perListener((l, emit) => emit({ listener: l.name }, l.openConnections)))
  m.counter('switchyard_listener_connections_total', 'Client connections accepted per listener.', ['listener'],
    perListener((l, emit) => emit({ listener: l.name }, l.accepted)))
  m.counter('switchyard_tls_handshakes_total', 'TLS handshakes per listener by result: full, resumed (a session ticket from any thread), failed.', ['listener', 'result'],
    perListener((l, emit) => {
      if (l.handshakes === null) return
      const failed = Object.values(l.handshakes.errors).reduce((a, b) => a + b, 0)
      emit({ listener: l.name, result: 'full' }, l.handshakes.ok - l.handshakes.resumed)
      emit({ listener: l.name, result: 'resumed' }, l.handshakes.resumed)
      emit({ listener: l.name, result: 'failed' }, failed)
    }))
  m.counter('switchyard_tls_handshake_errors_total', 'Failed TLS handshakes per listener by reason (timeout, plain_http, protocol, reset, other).', ['listener', 'reason'],
    perListener((l, emit) => {
      if (l.handshakes === null) return
      for (const [reason, n] of Object.entries(l.handshakes.errors)) emit({ listener: l.name, reason }, n)
    }))
  m.counter('switchyard_proxy_protocol_rejected_total', 'Connections closed for a missing, malformed or untrusted PROXY protocol header.', ['listener'],
    perListener((l, emit) => emit({ listener: l.name }, l.proxyProtocolRejected)))
  m.counter('switchyard_connections_refused_total', 'Connections closed at once by a cap: limits.maxConnections (limit="max_connections") or limits.maxConnectionsPerClient (limit="max_connections_per_client").', ['listener', 'limit'],
    perListener((l, emit) => {
      emit({ listener: l.name, limit: 'max_connections' }, l.refused.maxConnections)
      emit({ listener: l.name, limit: 'max_connections_per_client' }, l.refused.maxConnectionsPerClient)
    }))
  m.counter('switchyard_https_redirects_total', 'Requests answered 308 by httpsRedirect.', ['listener'],
    perListener((l, emit) => emit({ listener: l.name }, l.httpsRedirects)))
  m.gauge('switchyard_tls_certificate_expiry_timestamp_seconds', 'notAfter of each certificate in use, seconds since the Unix epoch.', ['name', 'listener', 'source'], (_v, emit) => {
    for (const c of source.certificateStatus()) emit({ name: c.names[0] ?? c.subject, listener: c.listener, source: c.source }, Math.floor(c.notAfterMs / 1000))
  })
}
