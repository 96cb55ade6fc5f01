/**
 * `node dist/bench/log-cost.js [--lines N] [--rounds R]`: what the access log costs per line in CPU,
 * all of it: building the line and the batched writes (the libuv thread that writes counts too), to
 * a pipe that another process reads, as stdout is under a supervisor or a log shipper.
 *
 * CPU time, not wall time: on a machine shared with other work wall time grows with the load. Each
 * round runs a child process twice, access log on and off (A B A B …), N lines in turns of 50 (as
 * requests arrive), and reports (CPU on - CPU off) / N; the table shows medians over rounds.
 * The per-request tax on a real request path is measured by `npm run bench -- --access-log`.
 */
import { spawn } from 'node:child_process'
import { record } from './access-record'
import { accessLog, flushLogs, configureLog } from '../src/log'
import { logAccess } from '../src/proxy/access-log'

const TURN = 50

async function child (lines: number, on: boolean): Promise<void> {
  configureLog({ level: 'info', access: on })
  let written = 0
  const before = process.cpuUsage()
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      for (let i = 0; i < TURN; i++) logAccess(record)
      written += TURN
      if (written < lines) setImmediate(turn)
      else resolve()
    }
    turn()
  })
  await flushLogs(10_000)
  const used = process.cpuUsage(before)
  process.stderr.write(`${JSON.stringify({ on: accessLog.on, cpuMicros: used.user + used.system, lines })}\n`)
}

async function runChild (lines: number, on: boolean): Promise<number> {
  return await new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [__filename, '--child', on ? 'on' : 'off', '--lines', String(lines)], { stdio: ['ignore', 'pipe', 'pipe'] })
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
  const lines = value('--lines', 200_000)
  if (argv[0] === '--child') { await child(lines, argv[1] === 'on'); return }
  const rounds = value('--rounds', 5)
  const taxes: number[] = []
  const offs: number[] = []
  for (let r = 0; r < rounds; r++) {
    const on = await runChild(lines, true)
    const off = await runChild(lines, false)
    taxes.push((on - off) / lines)
    offs.push(off / lines)
  }
  process.stdout.write(`access log, CPU µs per line (build + batched writes to a pipe), ${rounds} rounds × ${lines} lines, ` +
    `node ${process.version}\n  median ${median(taxes).toFixed(2)} µs/line (rounds: ${taxes.map((t) => t.toFixed(2)).join(', ')}; ` +
    `the loop alone: ${median(offs).toFixed(2)} µs/line, subtracted)\n`)
}

main().catch((err: Error) => {
  process.stderr.write(`[log-cost] ${err.message}\n`)
  process.exit(1)
})
