/**
 * One pino logger per thread, created at module scope. Writes are asynchronous
 * (sonic-boom with sync: false) so logging never blocks the data path; a worker
 * must call `flushLogs()` before it exits (pino's exit hook runs only on the
 * main thread).
 */
import pino from 'pino'
import { isMainThread, threadId } from 'node:worker_threads'

const destination = pino.destination({ dest: 1, sync: false })

export const logger = pino({
  level: process.env.SWITCHYARD_LOG_LEVEL ?? 'info',
  base: { pid: process.pid, thread: isMainThread ? 'primary' : `worker-${threadId}` },
  timestamp: pino.stdTimeFunctions.isoTime,
}, destination)

/** The access log: one line per request, `log.access` turns it off. */
export const accessLogger = logger.child({ type: 'access' })

export function setLogLevel (level: string): void {
  logger.level = level
  accessLogger.level = level
}

export function flushLogs (): void {
  try { destination.flushSync() } catch { /* not ready yet or already closed */ }
}
