/**
 * The access log's cost per line (#18: the default access log within 2 µs of
 * it being off): switchyard's line builder (bytes into the thread's log
 * buffer) next to the string template it replaced (ISO time per line,
 * JSON.stringify of the target, sonic-boom) and next to pino's generic
 * `logger.info(fields)`. The buffer is emptied after every line so only
 * building is measured; the batch writes cost one system call per 4 KiB (a
 * pipe) to 16 KiB, measured end to end by `npm run bench -- --access-log`.
 */
import * as fs from 'node:fs'
import { performance } from 'node:perf_hooks'
import pino from 'pino'
import type { MicroSuite } from './types'
import { logAccess, useNativeLine } from '../../src/proxy/access-log'
import { record } from '../access-record'
import { accessLog } from '../../src/log'
import { LogSink } from '../../src/log-sink'

// lines go to /dev/null; each case empties its buffer after the line
const devNull = new LogSink('/dev/null')
accessLog.on = true
accessLog.sink = devNull

// each case sets the builder it measures (useNativeLine is an assignment once the addon was looked up: both pay the same)
function ours (): void {
  useNativeLine(true)
  logAccess(record)
  devNull.len = 0
}

function oursJs (): void {
  useNativeLine(false)
  logAccess(record)
  devNull.len = 0
}

// the pre-#18 template: a string per line, the time formatted per line, written to sonic-boom
const legacyDestination = pino.destination({ dest: fs.openSync('/dev/null', 'w'), sync: false, minLength: 16000 })
const legacyPrefix = '{"level":30,"time":"'
const legacyBindings = `","pid":${process.pid},"thread":"primary","type":"access",`
let legacyLines = 0
function legacy (): void {
  const r = record
  legacyDestination.write(legacyPrefix + new Date().toISOString() + legacyBindings +
    '"client":"' + r.clientIp + '","method":"' + r.method + '","path":' + JSON.stringify(r.target) +
    ',"status":' + r.status + ',"upstream":' + (r.entry !== null ? '"' + r.entry.address + '"' : 'null') +
    ',"bytes":' + r.bytesOut + ',"durationMs":' + Math.round((performance.now() - r.startedAt) * 1000) / 1000 +
    ',"flag":"' + r.flag + '"}\n')
  // keep sonic-boom's string from growing without bound (it is written out in the real thing)
  if (++legacyLines === 1000) { legacyLines = 0; (legacyDestination as unknown as { _buf: string })._buf = '' }
}

// what logging the same fields through pino's generic path costs
const pinoDestination = pino.destination({ dest: fs.openSync('/dev/null', 'w'), sync: false, minLength: 16000 })
const pinoLogger = pino({ base: { pid: process.pid, thread: 'primary' }, timestamp: pino.stdTimeFunctions.isoTime }, pinoDestination).child({ type: 'access' })
let pinoLines = 0
function naivePino (): void {
  const r = record
  const p = r.parser
  pinoLogger.info({
    client: r.clientIp,
    method: r.method,
    path: r.target,
    status: r.status,
    upstream: r.entry?.address ?? null,
    bytes: r.bytesOut,
    bytesIn: r.bytesIn,
    durationMs: Math.round((performance.now() - r.startedAt) * 1000) / 1000,
    upstreamMs: r.upstreamMs,
    flag: r.flag,
    host: p.header('host'),
    userAgent: p.header('user-agent'),
    referer: p.header('referer'),
    httpVersion: '1.1',
    requestId: r.requestId,
  })
  if (++pinoLines === 1000) { pinoLines = 0; (pinoDestination as unknown as { _buf: string })._buf = '' }
}

export const suites: MicroSuite[] = [
  {
    name: 'access-log line (15 fields)',
    cases: [
      { name: 'switchyard: bytes into the log buffer, C (addon)', fn: ours },
      { name: 'switchyard: bytes into the log buffer, JavaScript', fn: oursJs },
      { name: 'legacy string template + toISOString (8 fields)', fn: legacy },
      { name: 'naive pino logger.info(fields)', fn: naivePino },
    ],
  },
]
