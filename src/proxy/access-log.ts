/**
 * The access log (one line per request, asynchronous pino) and the warnings
 * for rejected requests and upstream trouble. Fields are flat and named the
 * same on every line so the log can be queried.
 */
import { performance } from 'node:perf_hooks'
import { accessLogger, logger, writeAccessLine } from '../log'
import type { ClientConnection } from './client'
import type { UpstreamEntry } from '../shared/state'
import type { ErrorCode } from '../errors'

export function logAccess (c: ClientConnection): void {
  if (!c.ctx.config.log.access || !accessLogger.isLevelEnabled('info')) return
  // client, method and upstream are tokens and addresses (nothing to escape);
  // the target may hold '"' or '\\', so it goes through JSON.stringify
  writeAccessLine(
    '"client":"' + c.clientIp + '","method":"' + c.method + '","path":' + JSON.stringify(c.target) +
    ',"status":' + c.status + ',"upstream":' + (c.entry !== null ? '"' + c.entry.address + '"' : 'null') +
    ',"bytes":' + c.bytesOut + ',"durationMs":' + Math.round((performance.now() - c.startedAt) * 1000) / 1000 +
    ',"flag":"' + c.flag + '"')
}

export function logRejected (c: ClientConnection, code: ErrorCode, detail: string): void {
  logger.warn({ client: c.clientIp, method: c.method || undefined, path: c.target || undefined, code, detail }, 'rejected request')
}

export function logUpstreamProblem (c: ClientConnection, entry: UpstreamEntry, detail: string, ejected = false): void {
  if (ejected) {
    logger.warn({ upstream: entry.address, reason: detail }, 'upstream ejected (passive health)')
    return
  }
  logger.warn({ upstream: entry.address, method: c.method, path: c.target, detail }, 'upstream request failed')
}
