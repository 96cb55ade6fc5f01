/**
 * stdout's one writer (src/log-sink.ts, src/log-ring.ts): a worker's lines go
 * to its ring in shared memory and the primary writes them with its own.
 *
 * The ring alone, on one thread: lines come out whole and in order across
 * wraps, a full ring drops and counts instead of growing, and a ring that
 * keeps up goes back to its front early (so it touches little memory).
 *
 * Real threads and a real pipe (log-ring-process.ts, the log module as the
 * proxy uses it): two workers and the primary logging at once give whole
 * lines, in order per thread; a worker that dies leaves its lines written and
 * the writer does not hang; with nobody reading stdout, lines are dropped and
 * counted, memory stays bounded and the last flush gives up at its deadline.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { join } from 'node:path'
import { LogSink } from '../../src/log-sink'
import { optionalHandoff } from '../../src/primary/handoff'
import { LogRing, allocateRing, RING_READ, RING_WRITE } from '../../src/log-ring'

const PROCESS = join(__dirname, 'log-ring-process.js')
const LINES = 20_000
/** ~50 MB per worker, against a ring of 8 MiB. */
const STALLED_LINES = 50_000

/** A worker-side sink on a ring, and the primary's view of that ring. */
function ringPair (capacity: number): { sink: LogSink, ring: LogRing } {
  const sab = allocateRing(capacity)
  const sink = new LogSink(1)
  sink.attachRing(sab)
  return { sink, ring: new LogRing(sab) }
}

/** What the primary would write now: every span until the ring is empty, consumed. */
function drainRing (ring: LogRing): string {
  let out = ''
  while (ring.span() > 0) {
    out += ring.data.toString('latin1', ring.from, ring.to)
    ring.consumed(ring.to)
  }
  return out
}

function line (i: number, size: number): string {
  const head = `{"i":${i},"pad":"`
  return `${head}${'x'.repeat(Math.max(0, size - head.length - 3))}"}\n`
}

describe('a worker\'s ring', () => {
  it('keeps lines whole and in order across many wraps, with the reader lagging by varying amounts', () => {
    const { sink, ring } = ringPair(4096)
    let written = ''
    let read = ''
    for (let i = 0; i < 5000; i++) {
      const text = line(i, 40 + (i * 37) % 400)
      const dropped = sink.dropped
      sink.write(text)
      if (sink.dropped === dropped) written += text
      // the reader takes one span now and then, as the primary's writes do
      if (i % 3 === 0 && ring.span() > 0) {
        read += ring.data.toString('latin1', ring.from, ring.to)
        ring.consumed(ring.to)
      }
    }
    read += drainRing(ring)
    assert.equal(read, written)
    const numbers = read.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { i: number }).i)
    assert.deepEqual(numbers, [...numbers].sort((a, b) => a - b), 'in order')
    assert.ok(numbers.length > 2500, `most lines kept (${numbers.length})`)
  })

  it('a full ring drops and counts lines, never grows, and takes lines again once read', () => {
    const { sink, ring } = ringPair(4096)
    for (let i = 0; i < 100; i++) sink.write(line(i, 100))
    assert.equal(ring.data.length, 4096)
    const kept = drainRing(ring).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).i)
    // a string line reserves 3 bytes per character (UTF-8's worst case): 4096 / 300 lines at least
    assert.ok(kept.length >= 13 && kept.length <= 40, `${kept.length} lines kept`)
    assert.deepEqual(kept, kept.map((_, i) => i), 'the first ones, whole')
    assert.equal(sink.dropped, 100 - kept.length, 'every other line counted as dropped')
    sink.write(line(1000, 100))
    assert.equal(JSON.parse(drainRing(ring)).i, 1000)
  })

  it('goes back to the front once past 2 MiB if the reader has caught up, so it touches little memory', () => {
    const { sink, ring } = ringPair(8 * 1024 * 1024)
    const header = ring.header
    let maxW = 0
    for (let i = 0; i < 60_000; i++) { // ~18 MB through the ring
      sink.write(line(i, 300))
      maxW = Math.max(maxW, Atomics.load(header, RING_WRITE))
      if (i % 100 === 0) drainRing(ring)
    }
    drainRing(ring)
    assert.equal(sink.dropped, 0)
    assert.ok(maxW < 2 * 1024 * 1024 + 64 * 1024, `the worker stayed in the first ~2 MiB (W reached ${maxW})`)
    assert.equal(Atomics.load(header, RING_READ), Atomics.load(header, RING_WRITE), 'all read')
  })

  it('a new worker in the slot goes on behind the lines the last one left', () => {
    const sab = allocateRing(4096)
    const first = new LogSink(1)
    first.attachRing(sab)
    first.write(line(1, 100))
    const second = new LogSink(1)
    second.hold()
    second.write(line(2, 100)) // held before its ring
    second.attachRing(sab)
    second.write(line(3, 100))
    const ring = new LogRing(sab)
    assert.deepEqual(drainRing(ring).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).i), [1, 2, 3])
  })
})

interface Report { exits: number[], dropped: number[], primaryDropped: number, flushMs: number, rssMB: number }

async function runProcess (mode: string, lines: number, read: boolean): Promise<{ stdout: string, report: Report, code: number | null }> {
  // (NODE_TEST_CONTEXT would make the child a test-runner child, whose stderr the runner takes)
  const env = { ...process.env, NODE_TEST_CONTEXT: undefined }
  const child = spawn(process.execPath, [PROCESS, mode, String(lines)], { stdio: ['ignore', 'pipe', 'pipe'], env })
  const chunks: Buffer[] = []
  if (read) child.stdout.on('data', (c: Buffer) => chunks.push(c))
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(timer)
  const reportLine = err.split('\n').find((l) => l.startsWith('{"exits"'))
  assert.ok(reportLine !== undefined, `no report (exit ${code}):\n${err.slice(-2000)}`)
  return { stdout: Buffer.concat(chunks).toString('utf8'), report: JSON.parse(reportLine) as Report, code }
}

/** Every line parses (whole), and each thread's numbers in the order written. */
function linesByThread (stdout: string): Map<string, number[]> {
  const byThread = new Map<string, number[]>()
  const lines = stdout.split('\n')
  assert.equal(lines.pop(), '', 'the output ends with a whole line')
  for (const text of lines) {
    let parsed: { t: number | string, i: number }
    try {
      parsed = JSON.parse(text) as { t: number | string, i: number }
    } catch {
      assert.fail(`a line that is not whole JSON: ${text.slice(0, 200)}`)
    }
    const key = String(parsed.t)
    const list = byThread.get(key) ?? []
    list.push(parsed.i)
    byThread.set(key, list)
  }
  return byThread
}

describe('stdout with worker threads: one writer', () => {
  it('two workers and the primary logging at once: every line whole, each thread\'s in order, none lost uncounted', async () => {
    const { stdout, report, code } = await runProcess('order', LINES, true)
    assert.equal(code, 0)
    assert.deepEqual(report.exits, [0, 0])
    assert.equal(report.primaryDropped, 0)
    const byThread = linesByThread(stdout)
    // a ring drops (and counts) lines only while the primary cannot write them out: on a quiet machine
    // none; in CI with other work on both cores, 478 of 20,001 once. Every line not counted is here, in order.
    for (const t of [0, 1]) {
      const got = byThread.get(String(t)) ?? []
      const dropped = report.dropped[t]
      assert.ok(dropped < LINES / 2, `worker ${t}: ${dropped} of ${LINES + 1} lines dropped`)
      assert.equal(got.length, LINES + 1 - dropped, `worker ${t}: every line not counted as dropped (${dropped} dropped)`)
      assert.equal(got[0], -1, `worker ${t}: the line held before its ring comes first`)
      for (let k = 1; k < got.length; k++) assert.ok(got[k] > got[k - 1], `worker ${t}: in order at ${k}: ${got[k - 1]}, ${got[k]}`)
      if (dropped === 0) assert.deepEqual(got, [-1, ...Array.from({ length: LINES }, (_, i) => i)])
    }
    const primary = byThread.get('primary') ?? []
    assert.ok(primary.length > 0, 'the primary logged meanwhile')
    assert.deepEqual(primary, primary.map((_, i) => i), 'the primary\'s lines in order')
  })

  it('a worker that dies: the lines it logged are written, the other worker\'s too, and nothing hangs', async () => {
    const { stdout, report, code } = await runProcess('crash', LINES, true)
    assert.equal(code, 0)
    assert.notEqual(report.exits[0], 0, 'worker 0 died of its exception')
    assert.equal(report.exits[1], 0)
    assert.ok(report.flushMs < 2000, `the last flush took ${report.flushMs} ms`)
    const byThread = linesByThread(stdout)
    // when the test's reader of stdout lags (a loaded machine), the primary cannot write and a full
    // ring drops lines, counted (seen in CI: 259 of 20,001; a reader stalled 3 s: 12,505); none that
    // went into the ring is lost with the worker
    assert.equal(byThread.get('0')?.length, LINES + 1 - report.dropped[0], `every line worker 0 committed before it died (${report.dropped[0]} dropped)`)
    assert.equal(byThread.get('1')?.length, LINES + 1 - report.dropped[1])
    assert.ok(report.dropped[0] < LINES && report.dropped[1] < LINES, `lines were written: ${JSON.stringify(report.dropped)} dropped`)
  })

  it('nobody reads stdout: lines are dropped and counted, memory stays bounded, the last flush gives up at its deadline', async () => {
    const { report, code } = await runProcess('stalled', STALLED_LINES, false)
    assert.equal(code, 0, 'exited, not stuck on the full pipe')
    assert.deepEqual(report.exits, [0, 0])
    assert.ok(report.dropped[0] > 0 && report.dropped[1] > 0, `each worker dropped lines: ${JSON.stringify(report.dropped)}`)
    assert.ok(report.flushMs < 1500, `the last flush came back after ${report.flushMs} ms (deadline 300)`)
    // each worker wrote ~50 MB of lines: what is kept is its ring (8 MiB) and the pipe's buffer
    assert.ok(report.rssMB < 150, `resident memory ${report.rssMB.toFixed(0)} MB`)
  })
})

describe('a sink on a pipe', () => {
  const addon = optionalHandoff()
  const canGrow = addon?.pipeSize !== undefined

  it('grows the pipe it writes to toward 1 MiB (what pipe-max-size allows); a socket and a file are left alone', { skip: !canGrow }, async () => {
    const maxSize = Number(fs.readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'))
    const expected = Math.min(1024 * 1024, maxSize) // 1 MiB, or the largest half of it the limit allows
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'swy-pipe-'))
    const fifo = join(dir, 'stdout')
    execFileSync('mkfifo', [fifo])
    // a real pipe for the child's stdout (node's own stdio pipes are socket pairs)
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    const writer = fs.openSync(fifo, fs.constants.O_WRONLY)
    try {
      assert.equal(addon?.pipeSize?.(reader, 0), 65536, 'a new pipe: 64 KiB')
      const sinkModule = join(__dirname, '..', '..', 'src', 'log-sink.js')
      const code = `const { LogSink } = require(${JSON.stringify(sinkModule)}); ` +
        `const pipe = new LogSink(1); const file = new LogSink(${JSON.stringify(join(dir, 'file.log'))}); ` +
        'process.stderr.write(JSON.stringify({ pipe: pipe.pipeBytes, file: file.pipeBytes }) + "\\n"); process.exit(0)'
      const env = { ...process.env, NODE_TEST_CONTEXT: undefined }
      const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', writer, 'pipe'], env })
      let err = ''
      child.stderr?.on('data', (c: Buffer) => { err += c.toString() })
      const exit = await new Promise<number | null>((resolve) => child.once('close', resolve))
      assert.equal(exit, 0, err)
      const report = JSON.parse(err.trim().split('\n').pop() ?? '') as { pipe: number, file: number }
      assert.equal(report.pipe, expected, 'the sink grew its pipe')
      assert.equal(report.file, -1, 'a file is no pipe')
      assert.equal(addon?.pipeSize?.(reader, 0), expected, 'the reader sees the same pipe grown')
      assert.equal(addon?.pipeSize?.(reader, 4096), expected, 'never shrunk')
      // a socket pair (node's stdio pipes) is not a pipe
      const child2 = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'], env })
      let err2 = ''
      child2.stderr.on('data', (c: Buffer) => { err2 += c.toString() })
      child2.stdout.resume()
      assert.equal(await new Promise<number | null>((resolve) => child2.once('close', resolve)), 0, err2)
      assert.equal((JSON.parse(err2.trim().split('\n').pop() ?? '') as { pipe: number }).pipe, -1)
    } finally {
      fs.closeSync(writer)
      fs.closeSync(reader)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
