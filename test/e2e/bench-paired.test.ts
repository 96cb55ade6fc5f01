/**
 * `npm run bench -- --paired` (bench/paired.ts) runs as the README says: two builds at once, a control
 * round of the baseline against itself, then the rounds of B against A, each with CPU µs per request
 * for both sides and their ratio, a summary and a results file. The numbers are not judged (the suite
 * shares the machine); that they are real readings is: requests were served and CPU was counted.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { median } from '../../bench/paired'

const ROOT = path.resolve(__dirname, '..', '..', '..')

test('median of the round ratios', () => {
  assert.equal(median([1.2, 0.9, 1.0]), 1.0)
  assert.equal(median([0.9, 1.1, 0.95, 1.0]), 0.975)
})

test('npm run bench -- --paired: a control round, a paired round, the summary and a results file', { timeout: 120_000 }, async () => {
  const script = path.join(ROOT, 'dist', 'src', 'cli.js')
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'load.js'), '--paired', '--baseline', script,
    '--rounds', '1', '--duration', '1', '--connections', '8', '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const deadline = setTimeout(() => child.kill('SIGTERM'), 110_000)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(deadline)
  assert.equal(code, 0, `the bench exits 0\n${err}`)
  const result = JSON.parse(out) as {
    schema: string
    rounds: Array<{ kind: string, ratio: number, a: { cpuMicrosPerRequest: number, requestsPerSec: number, errors: number }, b: { cpuMicrosPerRequest: number, requestsPerSec: number, errors: number } }>
    summary: { medianRatio: number, below1: number, rounds: number, controlRatio: number }
  }
  assert.equal(result.schema, 'switchyard-bench-paired/1')
  assert.deepEqual(result.rounds.map((r) => r.kind), ['A/A', 'A/B'])
  for (const r of result.rounds) {
    for (const side of [r.a, r.b]) {
      assert.ok(side.requestsPerSec > 0, 'requests were served')
      assert.ok(side.cpuMicrosPerRequest > 0 && Number.isFinite(side.cpuMicrosPerRequest), 'CPU was counted per request')
      assert.equal(side.errors, 0)
    }
    assert.ok(Math.abs(r.ratio - r.b.cpuMicrosPerRequest / r.a.cpuMicrosPerRequest) < 1e-9)
  }
  assert.equal(result.summary.rounds, 1)
  assert.equal(result.summary.medianRatio, result.rounds[1].ratio)
  assert.equal(result.summary.controlRatio, result.rounds[0].ratio)
  assert.equal(result.summary.below1, result.rounds[1].ratio < 1 ? 1 : 0)
  // the results file of this run
  const dir = path.join(ROOT, 'bench', 'results')
  const written = fs.readdirSync(dir).filter((f) => f.startsWith('paired-')).map((f) => path.join(dir, f))
    .find((f) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { summary: { medianRatio: number } }).summary.medianRatio === result.summary.medianRatio)
  assert.ok(written !== undefined, 'bench/results/paired-<date-time>.json written')
  fs.rmSync(written)
})
