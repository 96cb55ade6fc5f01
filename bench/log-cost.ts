/**
 * `node dist/bench/log-cost.js [--lines N] [--rounds R] [--rate L] [--threads T]`: what the access
 * log costs per line in CPU, all of it: building the line and the batched writes (the libuv thread
 * that writes counts too), to a pipe that another process reads, as stdout is under a supervisor or
 * a log shipper.
 *
 * CPU time, not wall time: on a machine shared with other work wall time grows with the load. Each
 * round runs a child process per variant (A B A B …) and reports (CPU on - CPU off) / lines; the
 * table shows medians over rounds.
 *
 * Without --threads: sequential mode, one thread writes N lines at L lines/s (--rate, paced as
 * requests arrive). Unpaced, the lines outran the pipe: the sink's backlog grew towards its bound,
 * and its reallocations (page faults, copies) were measured instead of the log's own cost. With
 * --threads T: worker mode, T worker threads each write N lines at L lines/s, and two ways of
 * getting them to stdout side by side:
 *   direct  every worker writes fd 1 itself in batches of at most PIPE_BUF (the design before rings)
 *   ring    workers append to their ring, the primary alone writes stdout: one writev of every ring and its
 *           own lines every 50 ms (up to 1 MiB), through process.stdout
 * The per-request tax on a real request path is measured by `npm run bench -- --access-log`.
 */
import { spawn } from 'node:child_process'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { record } from './access-record'
import { accessLog, flushLogs, configureLog, holdLogs, useLogRing, openLogRings } from '../src/log'
import { logAccess } from '../src/proxy/access-log'

type Variant = 'off' | 'on' | 'direct' | 'ring'

interface ThreadTask { variant: Variant, lines: number, rate: number, ring: SharedArrayBuffer | null }

/** One thread's lines at `rate` per second: each timer turn writes what is due by now. */
async function writePaced (lines: number, rate: number): Promise<void> {
  const began = performance.now()
  let written = 0
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      const due = Math.min(lines, Math.floor((performance.now() - began) * rate / 1000))
      for (; written < due; written++) logAccess(record)
      if (written < lines) setTimeout(turn, 1)
      else resolve()
    }
    turn()
  })
}

/** A worker thread of a --threads child. */
async function threadMain (task: ThreadTask): Promise<void> {
  if (task.variant !== 'direct') holdLogs()
  configureLog({ level: 'info', access: task.variant !== 'off' })
  if (task.variant !== 'direct') useLogRing(task.ring)
  const port = parentPort as NonNullable<typeof parentPort>
  await new Promise<void>((resolve) => port.once('message', () => resolve()))
  await writePaced(task.lines, task.rate)
  await flushLogs(10_000)
  port.postMessage('done')
}

async function child (variant: Variant, lines: number, threads: number, rate: number): Promise<void> {
  if (threads === 0) {
    configureLog({ level: 'info', access: variant === 'on' }, true)
    const before = process.cpuUsage()
    await writePaced(lines, rate)
    await flushLogs(10_000)
    const used = process.cpuUsage(before)
    process.stderr.write(`${JSON.stringify({ on: accessLog.on, cpuMicros: used.user + used.system, lines })}\n`)
    return
  }
  configureLog({ level: 'info', access: true }, false)
  // the direct variant has no rings: the primary's sink stays a 4 KiB writer among others
  const rings = variant === 'direct' ? null : openLogRings(threads)
  const workers = Array.from({ length: threads }, (_, i) => new Worker(__filename, {
    workerData: { variant, lines, rate, ring: rings?.[i] ?? null } satisfies ThreadTask,
  }))
  await new Promise((resolve) => setTimeout(resolve, 300)) // started and configured
  const before = process.cpuUsage() // the whole process: every thread, the libuv pool too
  const done = workers.map(async (w) => await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve())
    w.once('error', reject)
  }))
  for (const w of workers) w.postMessage('go')
  await Promise.all(done)
  await flushLogs(10_000)
  const used = process.cpuUsage(before)
  await Promise.all(workers.map(async (w) => await w.terminate()))
  process.stderr.write(`${JSON.stringify({ variant, cpuMicros: used.user + used.system, lines: lines * threads })}\n`)
}

async function runChild (variant: Variant, lines: number, threads: number, rate: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const args = [__filename, '--child', variant, '--lines', String(lines), '--threads', String(threads), '--rate', String(rate)]
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout.resume() // the reader: discards
    let err = ''
    proc.stderr.on('data', (c: Buffer) => { err += c.toString() })
    proc.on('close', (code) => {
      const line = err.split('\n').find((l) => l.startsWith('{'))
      if (code !== 0 || line === undefined) { reject(new Error(`child exited ${code}: ${err}`)); return }
      resolve((JSON.parse(line) as { cpuMicros: number }).cpuMicros)
    })
  })
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[sorted.length >> 1]
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const value = (flag: string, fallback: number): number => {
    const i = argv.indexOf(flag)
    return i === -1 ? fallback : Number(argv[i + 1])
  }
  const threads = value('--threads', 0)
  const rate = value('--rate', 30_000)
  const lines = value('--lines', 90_000)
  if (argv[0] === '--child') { await child(argv[1] as Variant, lines, threads, rate); return }
  const rounds = value('--rounds', 5)
  if (threads === 0) {
    const taxes: number[] = []
    const offs: number[] = []
    for (let r = 0; r < rounds; r++) {
      const on = await runChild('on', lines, 0, rate)
      const off = await runChild('off', lines, 0, rate)
      taxes.push((on - off) / lines)
      offs.push(off / lines)
    }
    process.stdout.write(`access log, CPU µs per line (build + batched writes to a pipe), ${rounds} rounds × ${lines} lines at ${rate}/s, ` +
      `node ${process.version}\n  median ${median(taxes).toFixed(2)} µs/line (rounds: ${taxes.map((t) => t.toFixed(2)).join(', ')}; ` +
      `the paced loop alone: ${median(offs).toFixed(2)} µs/line, subtracted)\n`)
    return
  }
  const total = lines * threads
  const taxes: Record<'direct' | 'ring', number[]> = { direct: [], ring: [] }
  const offs: number[] = []
  for (let r = 0; r < rounds; r++) {
    const off = await runChild('off', lines, threads, rate)
    offs.push(off / total)
    for (const variant of ['direct', 'ring'] as const) taxes[variant].push((await runChild(variant, lines, threads, rate) - off) / total)
  }
  process.stdout.write('access log in worker mode, CPU µs per line (build + getting it to a pipe another process reads), ' +
    `${threads} threads × ${lines} lines at ${rate}/s each, ${rounds} rounds, node ${process.version}\n`)
  for (const variant of ['direct', 'ring'] as const) {
    process.stdout.write(`  ${variant.padEnd(6)}  median ${median(taxes[variant]).toFixed(2)} µs/line ` +
      `(rounds: ${taxes[variant].map((t) => t.toFixed(2)).join(', ')})\n`)
  }
  process.stdout.write('  direct: each worker writes fd 1 in ≤ 4 KiB batches; ring: the primary alone writes, one writev every 50 ms (≤ 1 MiB)\n' +
    `  (the paced loop alone: ${median(offs).toFixed(2)} µs/line, subtracted)\n`)
}

if (isMainThread) {
  main().catch((err: Error) => {
    process.stderr.write(`[log-cost] ${err.message}\n`)
    process.exit(1)
  })
} else {
  void threadMain(workerData as ThreadTask)
}
