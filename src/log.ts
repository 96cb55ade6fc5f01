/**
 * One pino logger per thread, created at module scope, and the access log's
 * settings. Every line goes into a per-thread LogSink (src/log-sink.ts): bytes
 * in a preallocated buffer written asynchronously in batches, so logging never
 * blocks the data path and costs no system call per line. Buffered lines are
 * flushed asynchronously with a deadline before the process exits or a worker
 * is stopped (`flushLogs`): a synchronous flush would block for ever if stdout
 * is a pipe nobody reads (a stalled log shipper), and shutdown must not hang
 * on that.
 *
 * Every line names its level ("level":"info"), pino's lines and the access
 * log's alike.
 *
 * stdout has one writer, the primary thread: in worker mode each worker's
 * stdout lines (pino's and the access log's) go to its slot's ring in shared
 * memory and the primary writes them with its own (src/log-ring.ts), so lines
 * from different threads never interleave and batches are large. A worker
 * holds its lines until it has a slot (holdLogs, useLogRing).
 */
import pino from 'pino'
import { isMainThread, threadId } from 'node:worker_threads'
import { LogSink } from './log-sink'
import { allocateRing } from './log-ring'

/** This thread's stdout: pino's lines, and the access log unless `log.accessFile` is set. */
const stdoutSink = new LogSink(1)

const threadName = isMainThread ? 'primary' : `worker-${threadId}`

export const logger = pino({
  level: process.env.SWITCHYARD_LOG_LEVEL ?? 'info',
  base: { pid: process.pid, thread: threadName },
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
}, stdoutSink)

/** The access log's settings on this thread, read once per request by src/proxy/access-log.ts. */
export const accessLog = {
  /** `log.access` and a level that shows info lines. */
  on: logger.isLevelEnabled('info'),
  /** `log.redactQuery`: the path is logged without its query string. */
  redactQuery: false,
  /** Where access lines go: stdout, or the `log.accessFile` sink. */
  sink: stdoutSink,
  /** Everything of a line before the time, and between the time and the fields (bindings serialised once). */
  prefix: Buffer.from('{"level":"info","time":"', 'latin1'),
  bindings: Buffer.from(`","pid":${process.pid},"thread":"${threadName}","type":"access",`, 'latin1'),
}

let accessEnabled = true
let fileSink: LogSink | null = null

export interface LogSettings {
  level: string
  access: boolean
  redactQuery?: boolean
  accessFile?: string
}

/**
 * Apply `log` from the config on this thread (start and reload); `exclusive`:
 * no other thread writes logs (sequential mode). Returns why
 * `log.accessFile` could not be opened (the access log then stays where it
 * was, or on stdout), or null.
 */
export function configureLog (settings: LogSettings, exclusive = false): string | null {
  let failure: string | null = null
  stdoutSink.setExclusive(exclusive)
  logger.level = settings.level
  accessEnabled = settings.access
  accessLog.redactQuery = settings.redactQuery === true
  const path = settings.access ? settings.accessFile : undefined
  if ((fileSink?.path ?? undefined) !== path) {
    const old = fileSink
    try {
      fileSink = path === undefined ? null : new LogSink(path)
      if (old !== null) void old.close(1000)
    } catch (err) {
      failure = `log.accessFile: cannot open ${path ?? ''}: ${(err as Error).message}`
    }
  }
  accessLog.sink = fileSink ?? stdoutSink
  accessLog.on = accessEnabled && logger.isLevelEnabled('info')
  return failure
}

/** The level alone (--log-level, workers before their first config). */
export function setLogLevel (level: string): void {
  logger.level = level
  accessLog.on = accessEnabled && logger.isLevelEnabled('info')
}

/** SIGUSR1 (logrotate): open `log.accessFile` again. */
export function reopenLogs (): void {
  if (fileSink !== null) fileSink.reopen()
}

/** Lines this thread dropped because an output did not keep up or failed. */
export function droppedLogLines (): number {
  return stdoutSink.dropped + (fileSink?.dropped ?? 0)
}

/**
 * Flush buffered log lines (on the primary: the workers' rings too; a worker's
 * stdout lines are already the primary's); resolves when written or after
 * `timeoutMs`, whichever is first.
 */
export async function flushLogs (timeoutMs = 1000): Promise<void> {
  await Promise.all([stdoutSink.drain(timeoutMs), fileSink !== null ? fileSink.drain(timeoutMs) : undefined])
}

/** A worker at start: keep stdout lines until useLogRing() says where they go. */
export function holdLogs (): void {
  stdoutSink.hold()
}

/**
 * A worker with its slot: stdout lines go to that slot's ring (the primary
 * writes them), or, given null (no slot), this thread writes them itself.
 */
export function useLogRing (ring: SharedArrayBuffer | null): void {
  stdoutSink.attachRing(ring)
}

/** The primary in worker mode: one ring per worker slot, which this thread's stdout sink writes out. */
export function openLogRings (slots: number): SharedArrayBuffer[] {
  const rings = Array.from({ length: slots }, () => allocateRing())
  stdoutSink.addRings(rings, isMainThread ? process.stdout : null) // a worker's process.stdout is not fd 1
  return rings
}

/** The worker pool is gone: what its rings hold is written (flushLogs waits for it), then they are dropped. */
export function closeLogRings (rings: readonly SharedArrayBuffer[]): void {
  stdoutSink.retireRings(rings)
}
