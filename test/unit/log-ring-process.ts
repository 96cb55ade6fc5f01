/**
 * A process for log-ring.test.ts that plays switchyard's threads with the real
 * log module: the main thread is the primary (its stdout sink writes the
 * rings, and logs lines of its own meanwhile), worker threads hold their lines,
 * attach a ring each and log through pino, as proxy workers do. stdout is the
 * pipe the test reads (or leaves unread); a report goes to stderr as one JSON
 * line at the end.
 *
 *   node log-ring-process.js order|crash|stalled LINES
 *
 * order    2 workers × LINES lines of varied length (the rings wrap many times), the primary logs too
 * crash    worker 0 logs LINES lines and dies of an uncaught exception; worker 1 logs its lines
 * stalled  nobody reads stdout: workers log fast; the report says what was dropped, and that the
 *          primary's flush came back (bounded by its deadline) instead of hanging
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { logger, flushLogs, holdLogs, useLogRing, openLogRings, closeLogRings, droppedLogLines, configureLog } from '../../src/log'

interface Job { mode: string, lines: number, index: number, ring: SharedArrayBuffer }

/** 0-2000 characters, varied, so lines wrap around the ring at every offset. */
function pad (i: number): string {
  return 'x'.repeat((i * 7919) % 2001)
}

async function workerMain (job: Job): Promise<void> {
  holdLogs()
  logger.info({ t: job.index, i: -1 }, 'before the ring') // held, then moved into the ring first
  useLogRing(job.ring)
  for (let i = 0; i < job.lines; i++) {
    logger.info({ t: job.index, i, pad: pad(i) }, 'line')
    // as requests arrive, at most ~20 MB/s (a busy proxy worker logs ~10): the primary writes meanwhile.
    // Unread (stalled), as fast as it goes.
    if (i % 20 === 19) await new Promise((resolve) => job.mode === 'stalled' ? setImmediate(resolve) : setTimeout(resolve, 1))
  }
  const port = parentPort as NonNullable<typeof parentPort>
  // what did not fit in the ring (a primary too busy to write it out) is dropped and counted
  port.postMessage({ dropped: droppedLogLines() })
  if (job.mode === 'crash' && job.index === 0) throw new Error('worker 0 dies here')
}

async function main (): Promise<void> {
  const mode = process.argv[2]
  const lines = Number(process.argv[3])
  configureLog({ level: 'info', access: true })
  const rings = openLogRings(2)
  const dropped: number[] = []
  // the primary's own lines meanwhile (pino's, as its app logs), between the workers' lines
  let n = 0
  const timer = setInterval(() => { logger.info({ t: 'primary', i: n++ }, 'primary line') }, 2)
  const exits = await Promise.all([0, 1].map(async (index) => await new Promise<number>((resolve) => {
    const worker = new Worker(__filename, { workerData: { mode, lines, index, ring: rings[index] } satisfies Job })
    worker.on('message', (m: { dropped: number }) => { dropped[index] = m.dropped })
    worker.on('error', () => {})
    worker.once('exit', resolve)
  })))
  clearInterval(timer)
  closeLogRings(rings)
  const flushStarted = Date.now()
  await flushLogs(mode === 'stalled' ? 300 : 10_000)
  const flushMs = Date.now() - flushStarted
  const rssMB = process.memoryUsage().rss / 1048576
  process.stderr.write(`${JSON.stringify({ exits, dropped, primaryDropped: droppedLogLines(), flushMs, rssMB })}\n`)
  // a write still blocked on the unread pipe (stalled) must not keep the process
  process.exit(0)
}

if (isMainThread) {
  void main()
} else {
  void workerMain(workerData as Job)
}
