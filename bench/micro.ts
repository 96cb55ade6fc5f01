/**
 * `npm run bench:micro [-- [--quick] [--time MS] [--json] [FILTER...]]`
 *
 * Runs every suite exported by dist/bench/micro/*.js (except types.js) with tinybench and prints,
 * per suite, ops/s and ns/op of each case with its ratio to the fastest case and its speedup over
 * the naive case (a case named naive/baseline/legacy: the only one, or the one named after it).
 * FILTER (case-insensitive substring) keeps the suites whose "<file>/<suite name>" contains it,
 * and else the cases whose name contains it.
 *
 * Cases on the data path take tens of nanoseconds, less than a timer read costs, so each tinybench
 * sample calls the case `batch` times (batch calibrated to ~2 µs per sample) and ns/op is the
 * sample time divided by the batch.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { MicroCase, MicroSuite } from './micro/types'

interface Options {
  timeMs: number
  json: boolean
  /** ns/op from the process's CPU time, cases interleaved (a shared, loaded machine) instead of wall time */
  cpu: boolean
  filters: string[]
}

interface CaseResult {
  name: string
  opsPerSec: number
  nsPerOp: number
  /** relative margin of error of the mean, % */
  rme: number
  samples: number
  batch: number
  error: string | null
}

interface SuiteResult {
  file: string
  suite: string
  cases: CaseResult[]
}

const MICRO_DIR = path.join(__dirname, 'micro')
const SAMPLE_TARGET_NS = 2000
const BASELINE_NAME = /naive|baseline|legacy/i
const BASELINE_WORD = /\b(naive|baseline|legacy)\b/i

function parseArgs (argv: string[]): Options {
  const options: Options = { timeMs: 300, json: false, cpu: false, filters: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') options.timeMs = 100
    else if (arg === '--json') options.json = true
    else if (arg === '--cpu') options.cpu = true
    else if (arg === '--time') options.timeMs = Number(argv[++i])
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('npm run bench:micro -- [--quick] [--time MS per case] [--cpu] [--json] [FILTER...]\n' +
        '  --cpu  ns/op from CPU time (process.cpuUsage), cases interleaved, median of 7 rounds: for a loaded machine\n')
      process.exit(0)
    } else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`)
    else options.filters.push(arg.toLowerCase())
  }
  if (!Number.isFinite(options.timeMs) || options.timeMs <= 0) throw new Error('--time: milliseconds > 0')
  return options
}

function loadSuites (options: Options): { file: string; suite: MicroSuite }[] {
  let files: string[]
  try {
    files = fs.readdirSync(MICRO_DIR).filter((f) => f.endsWith('.js') && f !== 'types.js').sort()
  } catch {
    throw new Error(`${MICRO_DIR} not found: build first (npm run build)`)
  }
  const found: { file: string; suite: MicroSuite }[] = []
  for (const file of files) {
    const base = file.slice(0, -3)
    let suites: unknown
    try {
      suites = (require(path.join(MICRO_DIR, file)) as { suites?: unknown }).suites
    } catch (err) {
      process.stderr.write(`[micro] ${file}: failed to load: ${(err as Error).message}\n`)
      continue
    }
    if (!Array.isArray(suites)) {
      process.stderr.write(`[micro] ${file}: exports no \`suites\` array, skipped\n`)
      continue
    }
    for (const suite of suites as MicroSuite[]) {
      const key = `${base}/${suite.name}`.toLowerCase()
      if (options.filters.length === 0 || options.filters.some((f) => key.includes(f))) {
        found.push({ file: base, suite })
        continue
      }
      // Else keep the cases whose name matches, side by side as usual.
      const cases = suite.cases.filter((c) => options.filters.some((f) => c.name.toLowerCase().includes(f)))
      if (cases.length > 0) found.push({ file: base, suite: { name: suite.name, cases } })
    }
  }
  return found
}

/** Calls per tinybench sample so that one sample takes about SAMPLE_TARGET_NS. */
function calibrateBatch (fn: () => void): number {
  let calls = 0
  const start = process.hrtime.bigint()
  let elapsed = 0n
  while (elapsed < 5_000_000n && calls < 1_000_000) {
    fn()
    calls++
    elapsed = process.hrtime.bigint() - start
  }
  const nsPerCall = Number(elapsed) / calls
  return Math.max(1, Math.min(100_000, Math.ceil(SAMPLE_TARGET_NS / Math.max(nsPerCall, 0.1))))
}

/**
 * A loop with its own code per case: one shared closure would collect type feedback from every
 * case at its `fn()` call site, turn megamorphic and slow every case down unevenly.
 */
function batched (fn: () => void, batch: number): () => void {
  // eslint-disable-next-line no-new-func -- a fresh function per case is the point (see above)
  return new Function('fn', 'batch', 'return function batchedCase() { for (let i = 0; i < batch; i++) fn() }')(
    fn, batch) as () => void
}

const CPU_ROUNDS = 7

/** CPU microseconds (user + system) this process has used. */
function cpuMicros (): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

/**
 * --cpu: on a machine shared with other work, wall time per call grows with the
 * load while CPU time does not. Each round runs every case for about
 * timeMs / CPU_ROUNDS of CPU, cases interleaved (A B C A B C ...); ns/op is the
 * median over rounds, ± half the range of rounds relative to it.
 */
function runSuiteCpu (file: string, suite: MicroSuite, options: Options): SuiteResult {
  const entries = suite.cases.map((c) => {
    try {
      const batch = calibrateBatch(c.fn)
      return { c, run: batched(c.fn, batch), batch, perRound: 0, samples: [] as number[], error: null as string | null }
    } catch (err) {
      return { c, run: () => {}, batch: 0, perRound: 0, samples: [] as number[], error: (err as Error).message }
    }
  })
  const roundMicros = (options.timeMs * 1000) / CPU_ROUNDS
  for (const e of entries) {
    if (e.error !== null) continue
    const start = cpuMicros()
    let batches = 0
    while (cpuMicros() - start < roundMicros / 10) { e.run(); batches++ }
    e.perRound = Math.max(1, batches * 10)
  }
  for (let round = 0; round < CPU_ROUNDS; round++) {
    for (const e of entries) {
      if (e.error !== null) continue
      const start = cpuMicros()
      for (let i = 0; i < e.perRound; i++) e.run()
      e.samples.push(((cpuMicros() - start) * 1000) / (e.perRound * e.batch))
    }
  }
  const cases = entries.map((e): CaseResult => {
    if (e.error !== null) return { name: e.c.name, opsPerSec: Number.NaN, nsPerOp: Number.NaN, rme: Number.NaN, samples: 0, batch: 0, error: e.error }
    const sorted = [...e.samples].sort((a, b) => a - b)
    const nsPerOp = sorted[sorted.length >> 1]
    return {
      name: e.c.name,
      nsPerOp,
      opsPerSec: 1e9 / nsPerOp,
      rme: (50 * (sorted[sorted.length - 1] - sorted[0])) / nsPerOp,
      samples: sorted.length,
      batch: e.batch,
      error: null,
    }
  })
  return { file, suite: suite.name, cases }
}

async function runSuite (file: string, suite: MicroSuite, options: Options): Promise<SuiteResult> {
  if (options.cpu) return runSuiteCpu(file, suite, options)
  const { Bench } = await import('tinybench')
  const bench = new Bench({ name: suite.name, time: options.timeMs, warmupTime: Math.max(20, options.timeMs / 4) })
  const batches = new Map<string, number>()
  const failed = new Map<string, string>()
  for (const microCase of suite.cases as MicroCase[]) {
    try {
      const batch = calibrateBatch(microCase.fn)
      batches.set(microCase.name, batch)
      bench.add(microCase.name, batched(microCase.fn, batch))
    } catch (err) {
      failed.set(microCase.name, (err as Error).message)
    }
  }
  await bench.run()
  const cases: CaseResult[] = suite.cases.map((microCase) => {
    const empty: CaseResult = {
      name: microCase.name,
      opsPerSec: Number.NaN,
      nsPerOp: Number.NaN,
      rme: Number.NaN,
      samples: 0,
      batch: batches.get(microCase.name) ?? 0,
      error: failed.get(microCase.name) ?? null,
    }
    const task = bench.getTask(microCase.name)
    if (task === undefined || empty.error !== null) return empty
    const result = task.result
    if (result.state === 'errored') return { ...empty, error: result.error.message }
    if (result.state !== 'completed' && result.state !== 'aborted-with-statistics') {
      return { ...empty, error: result.state }
    }
    const nsPerOp = (result.period * 1e6) / empty.batch
    return {
      ...empty,
      nsPerOp,
      opsPerSec: 1e9 / nsPerOp,
      rme: result.latency.rme,
      samples: result.latency.samplesCount,
    }
  })
  return { file, suite: suite.name, cases }
}

function formatNumber (value: number, digits: number): string {
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/**
 * The naive case a case is measured against: itself when it is one; the only naive case when there
 * is one; else the naive case named after it ("round-robin" <- "naive round-robin (filter + i++ % n)").
 */
function baselineFor (c: CaseResult, ok: CaseResult[]): CaseResult | null {
  if (BASELINE_NAME.test(c.name)) return c
  const baselines = ok.filter((b) => BASELINE_NAME.test(b.name))
  if (baselines.length === 1) return baselines[0]
  const name = c.name.toLowerCase()
  return baselines.find((b) => {
    const stripped = b.name.replace(BASELINE_WORD, '').trim().toLowerCase()
    return stripped === name || stripped.startsWith(`${name} `)
  }) ?? null
}

function renderSuite (result: SuiteResult): string {
  const ok = result.cases.filter((c) => c.error === null)
  const fastest = ok.length > 0 ? Math.max(...ok.map((c) => c.opsPerSec)) : Number.NaN
  const hasBaseline = ok.some((c) => BASELINE_NAME.test(c.name))
  const columns = ['case', 'ops/s', 'ns/op', '±', 'vs fastest']
  if (hasBaseline) columns.push('vs naive')
  const rows = result.cases.map((c) => {
    if (c.error !== null) return [c.name, `error: ${c.error}`]
    const row = [
      c.name,
      formatNumber(c.opsPerSec, 0),
      formatNumber(c.nsPerOp, c.nsPerOp < 100 ? 2 : 1),
      `${formatNumber(c.rme, 1)}%`,
      c.opsPerSec === fastest ? 'fastest' : `${formatNumber(fastest / c.opsPerSec, 2)}× slower`,
    ]
    if (hasBaseline) {
      const baseline = baselineFor(c, ok)
      row.push(baseline === c ? 'baseline' : baseline === null ? '' : `${formatNumber(c.opsPerSec / baseline.opsPerSec, 2)}×`)
    }
    return row
  })
  const widths = columns.map((col, i) =>
    Math.max(col.length, ...rows.filter((r) => r.length > 2).map((r) => r[i].length)))
  const line = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd()
  return [
    `${result.file} / ${result.suite}`,
    line(columns),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => (r.length === 2 ? `${r[0].padEnd(widths[0])}  ${r[1]}` : line(r))),
    '',
  ].join('\n')
}

async function main (): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  const suites = loadSuites(options)
  if (suites.length === 0) {
    process.stderr.write(`[micro] no suites${options.filters.length > 0 ? ` matching ${options.filters.join(', ')}` : ''}` +
      ` in ${path.relative(process.cwd(), MICRO_DIR)}\n`)
    process.exitCode = 1
    return
  }
  if (!options.json) {
    process.stdout.write(options.cpu
      ? `switchyard micro-benchmarks: CPU time (process.cpuUsage), ${options.timeMs} ms per case in ${CPU_ROUNDS} interleaved rounds, node ${process.version}\n` +
        '(ns/op = median over rounds; ± = half the range of the rounds)\n\n'
      : `switchyard micro-benchmarks: tinybench, ${options.timeMs} ms per case, node ${process.version}\n` +
        `(each sample runs a case in a batch of ~${SAMPLE_TARGET_NS / 1000} µs; ± = relative margin of error)\n\n`)
  }
  const results: SuiteResult[] = []
  for (const [i, { file, suite }] of suites.entries()) {
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K[micro] ${i + 1}/${suites.length} ${file} / ${suite.name}`)
    const result = await runSuite(file, suite, options)
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
    results.push(result)
    if (!options.json) process.stdout.write(`${renderSuite(result)}\n`)
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ node: process.version, timeMs: options.timeMs, results }, null, 2)}\n`)
  }
  if (results.some((r) => r.cases.some((c) => c.error !== null))) process.exitCode = 1
}

main().catch((err: Error) => {
  process.stderr.write(`[micro] ${err.stack ?? err.message}\n`)
  process.exit(1)
})
