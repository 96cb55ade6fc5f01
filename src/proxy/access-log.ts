/**
 * The access log (one line per request, asynchronous) and the warnings for
 * rejected requests and upstream trouble. Fields are flat and named the same
 * on every line so the log can be queried. It reads an AccessRecord, which the
 * client connection fills in: the log knows nothing of connections.
 */
import { performance } from 'node:perf_hooks'
import { accessLogger, logger, writeAccessLine } from '../log'
import type { UpstreamEntry } from '../shared/state'
import type { ErrorCode } from '../errors'

/** What one access-log line says about a request. */
export interface AccessRecord {
  readonly clientIp: string
  readonly method: string
  /** The request target as received ('' when the request line never completed). */
  readonly target: string
  readonly status: number
  readonly entry: UpstreamEntry | null
  readonly bytesOut: number
  /** performance.now() when the request's first byte was read. */
  readonly startedAt: number
  /** Envoy-style response flag from the error catalogue, '-' for none. */
  readonly flag: string
  /** The route that matched and the pool the request went to (null: none; src/routing). */
  readonly route: { readonly name: string } | null
  readonly pool: { readonly name: string } | null
}

export function logAccess (r: AccessRecord): void {
  if (!accessLogger.isLevelEnabled('info')) return
  // client, method and upstream are tokens and addresses (nothing to escape);
  // the target may hold '"' or '\\', so it goes through JSON.stringify
  writeAccessLine(
    '"client":"' + r.clientIp + '","method":"' + r.method + '","path":' + JSON.stringify(r.target) +
    ',"status":' + r.status + ',"upstream":' + (r.entry !== null ? '"' + r.entry.address + '"' : 'null') +
    ',"bytes":' + r.bytesOut + ',"durationMs":' + Math.round((performance.now() - r.startedAt) * 1000) / 1000 +
    ',"flag":"' + r.flag + '"' +
    // route and pool names are tokens (config schema): nothing to escape
    (r.route !== null ? ',"route":"' + r.route.name + '"' : '') + (r.pool !== null ? ',"pool":"' + r.pool.name + '"' : ''))
}

export function logRejected (r: AccessRecord, code: ErrorCode, detail: string): void {
  logger.warn({ client: r.clientIp, method: r.method || undefined, path: r.target || undefined, code, detail }, 'rejected request')
}

export function logUpstreamProblem (r: AccessRecord, entry: UpstreamEntry, code: ErrorCode, detail: string): void {
  logger.warn({ upstream: entry.address, method: r.method, path: r.target, code, detail }, 'upstream request failed')
}

export function logEjection (entry: UpstreamEntry, detail: string): void {
  logger.warn({ upstream: entry.address, reason: detail }, 'upstream ejected (passive health)')
}
