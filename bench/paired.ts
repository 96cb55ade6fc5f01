/**
 * Paired A/B (#18): `npm run bench -- --paired --baseline OTHER/dist/src/cli.js [--rounds 8] [--duration 6]
 * [--workers 1] [--connections 64] [--access-log | --access-log-b] [--connection-close] [--balancer-script THIS/dist/src/cli.js] [--json]`
 *
 * Two builds of switchyard measured at the same time, not one after the other. On a shared VM the CPU a
 * request costs drifts by tens of percent from one minute to the next (the host's other guests), far more
 * than a change on the request path moves it, so runs taken in turn need many rounds to show a 5% change.
 * Here both balancers run at once on the balancer CPUs, each with a load generator of its own (half the
 * connections each) and the same nginx upstreams on the load CPUs: whatever the host does to one round, it
 * does to both, and the ratio of their CPU µs per request is the signal. Every other round the two start in
 * the other order on the other ports. The report gives each round's ratio B ÷ A (B: this build, A: the
 * baseline), their median and how many are below 1; a first round of A against A says how far apart two
 * identical builds read on this machine.
 *
 * Both balancers share the cores, so the absolute µs per request read higher than in `npm run bench` (the
 * two evict each other's caches): compare the ratio, not the µs. `--access-log` runs both with the access
 * log on (to stdout, read by this process); `--access-log-b` turns it on for B only (give the same build as
 * --baseline): the logging tax as a ratio. `--connection-close` sends `Connection: close` on every request
 * (wrk): each request is a new connection, so the ratio is the cost of a new connection (accept, hand-off).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ROOT, formatCpuList, freePort, halfPinning, spawnTracked, startBenchUpstreams, stopAll, stopProcess, waitForPort, type Managed } from './peers'
import { pickLoadGenerator, type LoadResult } from './loadgen'
import { cpuMicrosOfTree } from './proc-cpu'

interface PairedOptions {
  baseline: string
  script: string
  rounds: number
  durationS: number
  workers: number
  connections: number
  accessLog: boolean
  accessLogB: boolean
  connectionClose: boolean
  json: boolean
}

function parseArgs (argv: string[]): PairedOptions {
  const options: PairedOptions = {
    baseline: '',
    script: path.join(ROOT, 'dist/src/cli.js'),
    rounds: 8,
    durationS: 6,
    workers: 1,
    connections: 64,
    accessLog: false,
    accessLogB: false,
    connectionClose: false,
    json: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const number = (min: number): number => {
      const n = Number(argv[++i])
      if (!Number.isFinite(n) || n < min) throw new Error(`${arg}: a number >= ${min}`)
      return n
    }
    if (arg === '--paired') continue
    else if (arg === '--baseline') options.baseline = path.resolve(argv[++i] ?? '')
    else if (arg === '--balancer-script') options.script = path.resolve(argv[++i] ?? '')
    else if (arg === '--rounds') options.rounds = Math.floor(number(1))
    else if (arg === '--duration') options.durationS = number(1)
    else if (arg === '--workers') options.workers = Math.floor(number(0))
    else if (arg === '--connections') options.connections = Math.floor(number(2))
    else if (arg === '--access-log') options.accessLog = true
    else if (arg === '--access-log-b') options.accessLogB = true
    else if (arg === '--connection-close') options.connectionClose = true
    else if (arg === '--json') options.json = true
    else throw new Error(`--paired: unknown option ${arg} (--baseline, --balancer-script, --rounds, --duration, --workers, --connections, --access-log, --access-log-b, --connection-close, --json)`)
  }
  if (options.baseline === '') throw new Error('--paired needs --baseline PATH/dist/src/cli.js (the build to compare against)')
  for (const script of [options.baseline, options.script]) {
    if (!fs.existsSync(script)) throw new Error(`${script} is missing: build it first (npm run build)`)
  }
  return options
}

/** One side of a round: CPU µs per request and what the load generator saw. */
export interface Side { cpuMicrosPerRequest: number, requestsPerSec: number, p99Ms: number, errors: number }
export interface PairedRound { kind: 'A/A' | 'A/B', a: Side, b: Side, ratio: number }

export function median (values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export async function runPairedBench (argv: string[]): Promise<void> {
  const options = parseArgs(argv)
  const loadgen = pickLoadGenerator(null)
  const { pinned, balancerCpus, loadCpus } = halfPinning()
  const log = (line: string): void => { if (!options.json) process.stdout.write(line + '\n') }
  const upstreams = await startBenchUpstreams(loadCpus)
  const each = Math.max(1, Math.floor(options.connections / 2))
  const headers = options.connectionClose ? ['Connection: close'] : []
  const rounds: PairedRound[] = []
  try {
    log(`switchyard paired A/B: A ${path.relative(ROOT, options.baseline) || options.baseline}, B ${path.relative(ROOT, options.script) || options.script}` +
      `${options.accessLog ? ' (access log on for both)' : options.accessLogB ? ' (access log on)' : ''}${options.connectionClose ? ', a new connection per request' : ''}; --workers ${options.workers}, ${each} connections each, ${options.durationS} s rounds, ` +
      `${loadgen.name}, ${upstreams.kind} upstreams` +
      (pinned ? `; both balancers on CPU ${formatCpuList(balancerCpus as number[])}, load on CPU ${formatCpuList(loadCpus as number[])}` : '; no pinning'))
    log(' round  kind   A µs/req   B µs/req    B ÷ A   A req/s   B req/s')
    for (let r = 0; r <= options.rounds; r++) {
      // round 0: the baseline against itself; then this build against it, swapping which starts first
      const kind = r === 0 ? 'A/A' : 'A/B'
      const sides = [
        { script: options.baseline, accessLog: options.accessLog },
        { script: r === 0 ? options.baseline : options.script, accessLog: options.accessLog || (r !== 0 && options.accessLogB) },
      ]
      const order = r % 2 === 0 ? [0, 1] : [1, 0]
      const started: Array<{ managed: Managed, port: number }> = []
      try {
        for (const i of order) {
          const port = await freePort()
          const args = [sides[i].script, '--bind', `127.0.0.1:${port}`, '--workers', String(options.workers)]
          for (const p of upstreams.ports) args.push('--upstream', `127.0.0.1:${p}`)
          if (!sides[i].accessLog) args.push('--log-level', 'warn', '--no-access-log')
          const managed = spawnTracked(process.execPath, args, { name: i === 0 ? 'A' : 'B', cpus: balancerCpus })
          await waitForPort(managed, port, 20_000)
          started[i] = { managed, port }
        }
        const load = (i: number, durationS: number): Promise<LoadResult> =>
          loadgen.run({ url: `http://127.0.0.1:${started[i].port}/`, connections: each, durationS, threads: 1, cpus: loadCpus, headers })
        await Promise.all([load(0, 1), load(1, 1)]) // warm-up: code optimised, pools filled
        const before = [cpuMicrosOfTree(started[0].managed.pid), cpuMicrosOfTree(started[1].managed.pid)]
        const results = await Promise.all([load(0, options.durationS), load(1, options.durationS)])
        const side = (i: number): Side => ({
          cpuMicrosPerRequest: (cpuMicrosOfTree(started[i].managed.pid) - before[i]) / Math.max(1, results[i].requests),
          requestsPerSec: results[i].requestsPerSec,
          p99Ms: results[i].p99Ms,
          errors: results[i].non2xx + results[i].socketErrors,
        })
        const a = side(0)
        const b = side(1)
        for (const s of started) if (s.managed.exitStatus !== null) throw new Error(`${s.managed.name} exited (${s.managed.exitStatus}) during round ${r}`)
        const round: PairedRound = { kind, a, b, ratio: b.cpuMicrosPerRequest / a.cpuMicrosPerRequest }
        rounds.push(round)
        log(`${String(r).padStart(6)}  ${kind}  ${a.cpuMicrosPerRequest.toFixed(1).padStart(9)}  ${b.cpuMicrosPerRequest.toFixed(1).padStart(9)}  ` +
          `${round.ratio.toFixed(3).padStart(7)}  ${a.requestsPerSec.toFixed(0).padStart(8)}  ${b.requestsPerSec.toFixed(0).padStart(8)}` +
          (a.errors + b.errors > 0 ? `  errors ${a.errors}/${b.errors}` : ''))
      } finally {
        for (const s of started) if (s !== undefined) await stopProcess(s.managed)
      }
    }
    const ab = rounds.filter((r) => r.kind === 'A/B').map((r) => r.ratio)
    const control = rounds.filter((r) => r.kind === 'A/A').map((r) => r.ratio)
    const below = ab.filter((x) => x < 1).length
    const summary = {
      medianRatio: median(ab),
      below1: below,
      rounds: ab.length,
      controlRatio: control.length > 0 ? control[0] : Number.NaN,
    }
    log(`B ÷ A CPU µs per request: median ${summary.medianRatio.toFixed(3)} (${(100 * (summary.medianRatio - 1)).toFixed(1)}%), ` +
      `${below} of ${ab.length} rounds below 1; A against itself read ${summary.controlRatio.toFixed(3)}`)
    const result = { schema: 'switchyard-bench-paired/1', options, rounds, summary }
    const dir = path.join(ROOT, 'bench', 'results')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `paired-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`)
    fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
    if (options.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
    else log(`results: ${path.relative(ROOT, file)}`)
  } finally {
    for (const p of upstreams.processes) await stopProcess(p)
    await stopAll()
  }
}
