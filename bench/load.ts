/**
 * `npm run bench`: the end-to-end comparison. switchyard in sequential mode (--workers 0) and with
 * 1..N worker threads, optionally next to nginx, HAProxy, a plain node:http proxy and the npm package
 * http-proxy, all in front of the same upstreams and driven by the same load generator for the same
 * time and connections.
 *
 *   configurations A B C … run interleaved, A B C A B C …, --rounds times (each run: fresh start,
 *   brief warm-up, measured interval); the table shows medians over rounds.
 *
 * Pinning (taskset, on by default when there are >= 2 CPUs): the balancer (or peer) gets the first
 * half of the CPUs, the load generator and the upstreams the rest. On 2 cores that is
 *
 *     CPU 0: balancer (all its threads)      CPU 1: load generator + upstreams
 *
 * so worker threads compete for one core and requests/s cannot scale; "CPU µs per request" of the
 * balancer process (utime+stime of all its threads from /proc/PID/stat, across the measured interval,
 * over the requests answered) is the number that stays comparable between runs and machines.
 * --no-pin lets everything float.
 *
 * Writes bench/results/<date-time>.json (raw runs, medians, machine) and .svg (chart).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { renderChart, type ChartInput } from './chart'
import { runClusterBench } from './cluster'
import { runSoakBench } from './soak'
import { runTlsBench } from './tls'
import { runPairedBench } from './paired'
import { CLOCK_TICKS_PER_SEC, cpuMicrosOfTree } from './proc-cpu'
import { pickLoadGenerator, type LoadGenerator, type LoadResult } from './loadgen'
import {
  ROOT, allowedCpus, formatCpuList, freePort, indentTail, killAllSync, parseCpuList, peerDefinitions,
  spawnTracked, startNginxPeer, startNginxUpstreams, startNodeUpstreams, stopAll, stopProcess, waitForPort, which,
  INSTALL_HINT, type Managed, type Upstreams,
} from './peers'

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

interface Options {
  quick: boolean
  durationS: number
  warmupS: number
  rounds: number
  connections: number
  json: boolean
  peers: boolean
  workersList: number[]
  pin: boolean
  balancerCpus: number[] | null
  loadCpus: number[] | null
  upstreams: number
  /** nginx `return 200` upstreams: true (--nginx-upstreams), false (--node-upstreams), null: nginx when installed */
  nginxUpstreams: boolean | null
  loadgen: 'wrk' | 'autocannon' | null
  balancerScript: string
  peerThreads: number | null
  /** --scaling: sweep --workers 1, 2, 4 … over the balancer's cores, with nginx at the same N */
  scaling: boolean
  /** --connection-close: every request on a new connection (wrk -H 'Connection: close') */
  connectionClose: boolean
  /** --access-log: each switchyard configuration also runs with the default access log on */
  accessLog: boolean
  /** Everything after `--`, appended to the switchyard command line. */
  balancerArgs: string[]
}

const HELP = `npm run bench -- [options] [-- extra switchyard flags]

  --quick               short runs: 3 s measured, 1 s warm-up, 2 rounds
  --duration S          measured seconds per run (default 10)
  --warmup S            warm-up seconds after each start (default 2)
  --rounds N            interleaved rounds; the table shows medians (default 3)
  --connections N       concurrent connections of the load generator (default 64)
  --workers-list 0,1,2  switchyard configurations (default 0..os.availableParallelism())
  --peers               also measure nginx, HAProxy (when installed), the node:http proxy, the npm
                        package http-proxy and a relay that does no HTTP at all (the floor: Node's
                        own socket I/O)
  --scaling             sweep --workers 1, 2, 4 … up to the CPUs given to the balancer (the load
                        generator and upstreams keep their own CPUs), with nginx worker_processes N
                        at each N when installed: requests/s, speedup, efficiency, ideal line
  --connection-close    every request on a new connection (Connection: close): req/s = new
                        connections/s, including the hand-off of each one to a worker
  --access-log          each switchyard configuration twice: access log off, and on (the default
                        JSON lines to stdout, read by the bench), to measure the logging tax; with
                        --peers, nginx too (its combined log, 64 KiB buffer, to a FIFO the bench reads)
  --peer-threads N      nginx worker_processes / haproxy nbthread (default: CPUs given to the balancer)
  --upstreams N         upstream processes (default 2)
  --nginx-upstreams     nginx 'return 200' servers as upstreams (the default when nginx is installed:
                        the cheapest upstream leaves the load CPU to wrk, so every row runs saturated)
  --node-upstreams      bench/upstream.js processes as upstreams (the default without nginx)
  --loadgen wrk|autocannon   force a load generator (default: wrk if on PATH)
  --no-pin              no taskset pinning
  --balancer-cpus 0     CPUs for the balancer / peers (default: first half)
  --load-cpus 1         CPUs for the load generator and upstreams (default: the rest)
  --balancer-script P   balancer entry (default dist/src/cli.js)
  --json                print only the result JSON on stdout

  --soak [--minutes 10] [--workers 2] [--sample-s 10] [--connections 64] [--access-log]
                        memory under sustained load: RSS per sample and whether it stays flat
  --paired --baseline OTHER/dist/src/cli.js [--rounds 8] [--duration 6] [--workers 1] [--access-log(-b)]
                        this build and another at the same time on the same cores: CPU per request B ÷ A
                        per round (bench/paired.ts), for changes smaller than the machine's drift
`

function parseArgs (argv: string[]): Options {
  const options: Options = {
    quick: false,
    durationS: 10,
    warmupS: 2,
    rounds: 3,
    connections: 64,
    json: false,
    peers: false,
    workersList: [],
    pin: true,
    balancerCpus: null,
    loadCpus: null,
    upstreams: 2,
    nginxUpstreams: null,
    loadgen: null,
    balancerScript: path.join(ROOT, 'dist/src/cli.js'),
    peerThreads: null,
    scaling: false,
    connectionClose: false,
    accessLog: false,
    balancerArgs: [],
  }
  let duration: number | null = null
  let warmup: number | null = null
  let rounds: number | null = null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${arg} needs a value`)
      return v
    }
    const positive = (min: number): number => {
      const n = Number(value())
      if (!Number.isFinite(n) || n < min) throw new Error(`${arg}: expected a number >= ${min}`)
      return n
    }
    switch (arg) {
      case '--quick': options.quick = true; break
      case '--duration': duration = positive(1); break
      case '--warmup': warmup = positive(0); break
      case '--rounds': rounds = Math.floor(positive(1)); break
      case '--connections': options.connections = Math.floor(positive(1)); break
      case '--json': options.json = true; break
      case '--peers': options.peers = true; break
      case '--scaling': options.scaling = true; break
      case '--connection-close': options.connectionClose = true; break
      case '--access-log': options.accessLog = true; break
      case '--peer-threads': options.peerThreads = Math.floor(positive(1)); break
      case '--workers-list': options.workersList = parseWorkersList(value()); break
      case '--no-pin': options.pin = false; break
      case '--balancer-cpus': options.balancerCpus = parseCpuList(value()); break
      case '--load-cpus': options.loadCpus = parseCpuList(value()); break
      case '--upstreams': options.upstreams = Math.floor(positive(1)); break
      case '--nginx-upstreams': options.nginxUpstreams = true; break
      case '--node-upstreams': options.nginxUpstreams = false; break
      case '--balancer-script': options.balancerScript = path.resolve(value()); break
      case '--loadgen': {
        const name = value()
        if (name !== 'wrk' && name !== 'autocannon') throw new Error('--loadgen: wrk or autocannon')
        options.loadgen = name
        break
      }
      case '--help': case '-h':
        process.stdout.write(HELP)
        process.exit(0)
        break
      case '--':
        options.balancerArgs = argv.slice(i + 1)
        i = argv.length
        break
      default:
        throw new Error(`unknown option ${arg} (see --help)`)
    }
  }
  options.durationS = duration ?? (options.quick ? 3 : 10)
  options.warmupS = warmup ?? (options.quick ? 1 : 2)
  options.rounds = rounds ?? (options.quick ? 2 : 3)
  if (options.workersList.length === 0) {
    for (let n = 0; n <= os.availableParallelism(); n++) options.workersList.push(n)
  }
  return options
}

function parseWorkersList (list: string): number[] {
  const workers = list.split(',').map((s) => Number.parseInt(s, 10))
  if (workers.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`--workers-list: bad list ${list}`)
  return [...new Set(workers)]
}

// ---------------------------------------------------------------------------------------------
// Pinning
// ---------------------------------------------------------------------------------------------

interface Pinning {
  enabled: boolean
  balancerCpus: number[] | null
  loadCpus: number[] | null
  /** Human-readable: where each process runs, or why nothing is pinned. */
  description: string
}

function planPinning (options: Options, loadgenName: string): Pinning {
  const cpus = allowedCpus()
  const off = (why: string): Pinning => ({ enabled: false, balancerCpus: null, loadCpus: null, description: why })
  if (!options.pin) return off('no pinning (--no-pin): all processes float over all CPUs')
  if (which('taskset') === null) return off('no pinning: taskset not found (apt-get install -y util-linux)')
  if (cpus.length < 2 && options.balancerCpus === null) return off('no pinning: only one CPU')
  const half = Math.max(1, Math.floor(cpus.length / 2))
  const balancerCpus = options.balancerCpus ?? cpus.slice(0, half)
  const loadCpus = options.loadCpus ?? cpus.filter((c) => !balancerCpus.includes(c))
  if (loadCpus.length === 0) return off('no pinning: no CPU left for the load generator')
  return {
    enabled: true,
    balancerCpus,
    loadCpus,
    description: `taskset: balancer/peer on CPU ${formatCpuList(balancerCpus)}; ` +
      `${loadgenName} + upstreams on CPU ${formatCpuList(loadCpus)}`,
  }
}

// ---------------------------------------------------------------------------------------------
// Configurations and runs
// ---------------------------------------------------------------------------------------------

interface Configuration {
  id: string
  label: string
  kind: 'switchyard' | 'peer'
  /** switchyard worker threads (0 = sequential); nginx worker processes under --scaling; else null */
  workers: number | null
  /** switchyard with the access log on (--access-log) */
  accessLog: boolean
  start(port: number): Promise<Managed>
}

interface RunRecord {
  config: string
  round: number
  ok: boolean
  error: string | null
  warmup: LoadResult | null
  result: LoadResult | null
  errors: number
  cpuMicros: number
  cpuMicrosPerRequest: number
  /** balancer CPU time / measured wall time, in % of one core */
  cpuPercent: number
  /** how the balancer ended when stopped (0 expected) */
  exitStatus: number | string | null
}

interface Summary {
  id: string
  label: string
  kind: 'switchyard' | 'peer'
  workers: number | null
  accessLog: boolean
  runs: number
  failedRuns: number
  requestsPerSec: number
  requestsPerSecMin: number
  requestsPerSecMax: number
  p50Ms: number
  p99Ms: number
  /** summed over rounds, so a rare error is not hidden by the median */
  errorsTotal: number
  cpuMicrosPerRequest: number
  cpuMicrosPerRequestMin: number
  cpuMicrosPerRequestMax: number
  cpuPercent: number
  /** requests/s over sequential switchyard's */
  speedup: number | null
  badExits: (number | string)[]
}

function switchyardConfig (workers: number, options: Options, upstreams: Upstreams, pinning: Pinning, accessLog = false): Configuration {
  return {
    id: (workers === 0 ? 'switchyard-seq' : `switchyard-w${workers}`) + (accessLog ? '-log' : ''),
    label: (workers === 0 ? 'switchyard seq' : `switchyard ×${workers}`) + (accessLog ? ' + access log' : ''),
    kind: 'switchyard',
    workers,
    accessLog,
    async start (port) {
      const args = [options.balancerScript, '--bind', `127.0.0.1:${port}`]
      for (const p of upstreams.ports) args.push('--upstream', `127.0.0.1:${p}`)
      // with the access log: the default (info level, JSON lines on stdout, which the bench reads)
      args.push('--workers', String(workers), ...(accessLog ? [] : ['--log-level', 'warn', '--no-access-log']), ...options.balancerArgs)
      const managed = spawnTracked(process.execPath, args, { name: 'switchyard', cpus: pinning.balancerCpus })
      await waitForPort(managed, port, 20_000)
      return managed
    },
  }
}

function median (values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function summarize (config: Configuration, runs: RunRecord[]): Summary {
  const ok = runs.filter((r) => r.ok && r.result !== null)
  const rps = ok.map((r) => (r.result as LoadResult).requestsPerSec)
  const cpu = ok.map((r) => r.cpuMicrosPerRequest)
  return {
    id: config.id,
    label: config.label,
    kind: config.kind,
    workers: config.workers,
    accessLog: config.accessLog,
    runs: runs.length,
    failedRuns: runs.length - ok.length,
    requestsPerSec: median(rps),
    requestsPerSecMin: ok.length > 0 ? Math.min(...rps) : Number.NaN,
    requestsPerSecMax: ok.length > 0 ? Math.max(...rps) : Number.NaN,
    p50Ms: median(ok.map((r) => (r.result as LoadResult).p50Ms)),
    p99Ms: median(ok.map((r) => (r.result as LoadResult).p99Ms)),
    errorsTotal: ok.reduce((sum, r) => sum + r.errors, 0),
    cpuMicrosPerRequest: median(cpu),
    cpuMicrosPerRequestMin: ok.length > 0 ? Math.min(...cpu) : Number.NaN,
    cpuMicrosPerRequestMax: ok.length > 0 ? Math.max(...cpu) : Number.NaN,
    cpuPercent: median(ok.map((r) => r.cpuPercent)),
    speedup: null,
    badExits: config.kind === 'switchyard'
      ? runs.map((r) => r.exitStatus).filter((s): s is number | string => s !== null && s !== 0)
      : [],
  }
}

// ---------------------------------------------------------------------------------------------
// Progress on stderr
// ---------------------------------------------------------------------------------------------

class Progress {
  private readonly tty = process.stderr.isTTY === true
  private timer: NodeJS.Timeout | null = null
  private phaseEnd = 0
  private text = ''
  /** seconds per run beyond warm-up + measurement (start, stop), learned as we go */
  private overheadS = 1.5

  constructor (private readonly totalRuns: number, private readonly runS: number) {}

  phase (runIndex: number, label: string, round: number, rounds: number, phase: string, phaseS: number,
    phaseOffsetS: number): void {
    const runsLeftAfterThis = this.totalRuns - runIndex - 1
    this.phaseEnd = Date.now() + phaseS * 1000
    const afterPhase = (this.runS - phaseOffsetS - phaseS) + runsLeftAfterThis * (this.runS + this.overheadS)
    this.text = `[bench] run ${runIndex + 1}/${this.totalRuns}  ${label}  round ${round}/${rounds}  ${phase}`
    const render = (): void => {
      const left = Math.max(0, Math.round((this.phaseEnd - Date.now()) / 1000 + afterPhase))
      const line = `${this.text}  ~${left} s left`
      if (this.tty) process.stderr.write(`\r\x1b[K${line}`)
      else if (phase !== 'starting') process.stderr.write(`${line}\n`)
    }
    render()
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = this.tty ? setInterval(render, 1000) : null
  }

  learnOverhead (seconds: number): void {
    this.overheadS = (this.overheadS + seconds) / 2
  }

  note (message: string): void {
    if (this.tty) process.stderr.write('\r\x1b[K')
    process.stderr.write(`${message}\n`)
  }

  done (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    if (this.tty) process.stderr.write('\r\x1b[K')
  }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/** Set on SIGINT/SIGTERM: runs failing because we are killing them are not news. */
let stopping = false

async function runOnce (config: Configuration, round: number, options: Options, loadgen: LoadGenerator,
  pinning: Pinning, threads: number, progress: Progress, runIndex: number): Promise<RunRecord> {
  const record: RunRecord = {
    config: config.id,
    round,
    ok: false,
    error: null,
    warmup: null,
    result: null,
    errors: 0,
    cpuMicros: 0,
    cpuMicrosPerRequest: Number.NaN,
    cpuPercent: Number.NaN,
    exitStatus: null,
  }
  const began = Date.now()
  let managed: Managed | null = null
  try {
    progress.phase(runIndex, config.label, round, options.rounds, 'starting', 0, 0)
    const port = await freePort()
    managed = await config.start(port)
    const load = {
      url: `http://127.0.0.1:${port}/`,
      connections: options.connections,
      threads,
      cpus: pinning.loadCpus,
      headers: options.connectionClose ? ['Connection: close'] : [],
    }
    if (options.warmupS > 0) {
      progress.phase(runIndex, config.label, round, options.rounds, 'warm-up', options.warmupS, 0)
      record.warmup = await loadgen.run({ ...load, durationS: options.warmupS })
      if (record.warmup.requests - record.warmup.non2xx === 0) {
        throw new Error(`no successful response during warm-up (${record.warmup.non2xx} non-2xx, ` +
          `${record.warmup.socketErrors} socket errors)\n${indentTail(managed)}`)
      }
    }
    progress.phase(runIndex, config.label, round, options.rounds, 'measuring', options.durationS, options.warmupS)
    const cpuBefore = cpuMicrosOfTree(managed.pid)
    const result = await loadgen.run({ ...load, durationS: options.durationS })
    const cpuAfter = cpuMicrosOfTree(managed.pid)
    if (managed.exitStatus !== null) throw new Error(`${managed.name} exited (${managed.exitStatus}) during the run`)
    record.result = result
    record.errors = result.non2xx + result.socketErrors
    record.cpuMicros = cpuAfter - cpuBefore
    record.cpuMicrosPerRequest = result.requests > 0 ? record.cpuMicros / result.requests : Number.NaN
    record.cpuPercent = (100 * record.cpuMicros) / (result.durationS * 1e6)
    record.ok = true
  } catch (err) {
    record.error = (err as Error).message
    if (!stopping) progress.note(`[bench] ${config.label} round ${round} failed: ${record.error}`)
  } finally {
    if (managed !== null) record.exitStatus = await stopProcess(managed)
  }
  progress.learnOverhead((Date.now() - began) / 1000 - options.warmupS - options.durationS)
  return record
}

function formatNumber (value: number, digits: number): string {
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function renderTable (summaries: Summary[], header: string[], notes: string[]): string {
  const columns = ['configuration', 'req/s', 'spread', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'CPU %',
    'vs seq']
  const rows = summaries.map((s) => [
    s.label + (s.failedRuns > 0 ? ` (${s.failedRuns}/${s.runs} failed)` : ''),
    formatNumber(s.requestsPerSec, 0),
    Number.isFinite(s.requestsPerSec) && s.requestsPerSec > 0
      ? `±${formatNumber((50 * (s.requestsPerSecMax - s.requestsPerSecMin)) / s.requestsPerSec, 1)}%`
      : '—',
    formatNumber(s.p50Ms, 2),
    formatNumber(s.p99Ms, 2),
    s.runs > s.failedRuns ? String(s.errorsTotal) : '—',
    formatNumber(s.cpuMicrosPerRequest, 1),
    formatNumber(s.cpuPercent, 0),
    s.speedup === null || !Number.isFinite(s.speedup) ? '—' : `${s.speedup.toFixed(2)}×`,
  ])
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd()
  return [
    ...header,
    '',
    line(columns),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    ...notes,
  ].join('\n') + '\n'
}

async function main (): Promise<void> {
  // the cluster bench (bench/cluster.ts) is its own measurement: 3 instances sharing a redis-server
  if (process.argv.includes('--cluster')) { await runClusterBench(process.argv.slice(2)); return }
  // HTTPS at the edge: its own comparison (bench/tls.ts)
  if (process.argv.includes('--tls')) { await runTlsBench(process.argv.slice(2)); return }
  // memory over a long run (bench/soak.ts)
  if (process.argv.includes('--soak')) { await runSoakBench(process.argv.slice(2)); return }
  // two builds at once, for a change too small to see in runs taken in turn (bench/paired.ts)
  if (process.argv.includes('--paired')) { await runPairedBench(process.argv.slice(2)); return }
  const options = parseArgs(process.argv.slice(2))

  if (!fs.existsSync(path.join(ROOT, 'dist/bench/upstream.js'))) {
    throw new Error('dist/bench/upstream.js is missing: build first (npm run build)')
  }
  const loadgen = pickLoadGenerator(options.loadgen)
  const pinning = planPinning(options, loadgen.name)
  const cpuCount = os.availableParallelism()
  const threads = pinning.loadCpus?.length ?? Math.max(1, Math.floor(cpuCount / 2))
  const peerThreads = options.peerThreads ?? pinning.balancerCpus?.length ?? cpuCount
  const balancerCores = pinning.balancerCpus?.length ?? cpuCount
  const scaling = options.scaling ? planScaling(balancerCores, cpuCount, pinning) : null
  if (scaling !== null) {
    options.workersList = scaling.steps
    // enough upstream processes that they are not what limits the higher steps
    options.upstreams = Math.max(options.upstreams, pinning.loadCpus?.length ?? 1)
  }

  // What to measure
  const notes: string[] = []
  const haveBalancer = fs.existsSync(options.balancerScript)
  if (!haveBalancer) {
    const message = `switchyard entry ${path.relative(ROOT, options.balancerScript)} not found (not built yet?)`
    if (!options.peers) throw new Error(`${message}; run with --peers to measure only the peers`)
    notes.push(`${message}: measured the peers only.`)
  }
  const peers = options.peers ? peerDefinitions() : []
  const missingHints = new Map<string, string[]>()
  for (const peer of peers.filter((p) => p.binary === null)) {
    missingHints.set(peer.installHint, [...(missingHints.get(peer.installHint) ?? []), peer.id])
  }
  for (const [hint, ids] of missingHints) notes.push(`not installed: ${ids.join(', ')} (install: ${hint})`)
  if (!options.peers) notes.push('peers: run with --peers to add nginx, HAProxy, a node:http proxy and http-proxy for reference.')

  let nginxUpstreams = false
  if (options.nginxUpstreams !== false) {
    if (which('nginx') !== null) nginxUpstreams = true
    else if (options.nginxUpstreams === true) notes.push(`--nginx-upstreams: nginx is not installed (${INSTALL_HINT}); used node upstreams.`)
  }

  process.on('SIGINT', () => { void interrupted('SIGINT', 130) })
  process.on('SIGTERM', () => { void interrupted('SIGTERM', 143) })

  const startedAt = new Date()
  const upstreams = nginxUpstreams
    ? await startNginxUpstreams(which('nginx') as string, options.upstreams, pinning.loadCpus)
    : await startNodeUpstreams(options.upstreams, pinning.loadCpus)

  const configs: Configuration[] = []
  if (haveBalancer) {
    for (const workers of options.workersList) {
      configs.push(switchyardConfig(workers, options, upstreams, pinning))
      if (options.accessLog) configs.push(switchyardConfig(workers, options, upstreams, pinning, true))
    }
  }
  for (const peer of peers) {
    if (peer.binary === null) continue
    const label = peer.id === 'nginx'
      ? `nginx ${peer.version} (${peerThreads} worker${peerThreads > 1 ? 's' : ''})`
      : peer.id === 'haproxy'
        ? `haproxy ${peer.version} (${peerThreads} thread${peerThreads > 1 ? 's' : ''})`
        : peer.id === 'node-relay'
          ? 'node relay, no HTTP (1 thread)'
          : peer.id === 'http-proxy' ? `http-proxy ${peer.version} (1 thread)` : 'node:http proxy (1 thread)'
    configs.push({
      id: peer.id,
      label,
      kind: 'peer',
      workers: null,
      accessLog: false,
      start: (port) => peer.start(port, upstreams.ports, peerThreads, pinning.balancerCpus),
    })
  }
  // --access-log --peers: nginx with its access log on, the yardstick for the logging tax
  const nginxPeer = peerDefinitions().find((p) => p.id === 'nginx')
  if (options.accessLog && options.peers && nginxPeer?.binary != null) {
    const binary = nginxPeer.binary
    configs.push({
      id: 'nginx-log',
      label: `nginx ${nginxPeer.version} (${peerThreads} worker${peerThreads > 1 ? 's' : ''}) + access log`,
      kind: 'peer',
      workers: null,
      accessLog: true,
      start: (port) => startNginxPeer(binary, port, upstreams.ports, peerThreads, pinning.balancerCpus, true),
    })
  }
  // --scaling: nginx with worker_processes N at each step N
  if (scaling !== null) {
    if (nginxPeer?.binary == null) {
      notes.push(`--scaling: nginx is not installed (${INSTALL_HINT}); no nginx column.`)
    } else {
      for (const n of scaling.steps) {
        configs.push({
          id: `nginx-scaling-${n}`,
          label: `nginx ${nginxPeer.version} (worker_processes ${n})`,
          kind: 'peer',
          workers: n,
          accessLog: false,
          start: (port) => nginxPeer.start(port, upstreams.ports, n, pinning.balancerCpus),
        })
      }
    }
  }
  if (configs.length === 0) throw new Error('nothing to measure')

  const header = [
    `switchyard load bench: ${loadgen.name} ${loadgen.version}, ${options.connections} connections, ` +
      `${options.durationS} s measured (+${options.warmupS} s warm-up) × ${options.rounds} rounds, medians`,
    `upstreams: ${upstreams.ports.length} × ${upstreams.kind === 'nginx' ? 'nginx return 200' : 'bench/upstream.js (net)'}` +
      `; ${cpuCount} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}`,
    `pinning: ${pinning.description}`,
  ]
  if (options.connectionClose) {
    header.push('connection per request (Connection: close): req/s = new connections/s, each one accepted, handed ' +
      'to a worker and closed')
  }
  if (scaling !== null) header.push(scaling.description)
  if (!options.json) process.stdout.write(`${header.join('\n')}\n`)

  // A B C A B C …
  const progress = new Progress(configs.length * options.rounds, options.warmupS + options.durationS)
  const runs: RunRecord[] = []
  let runIndex = 0
  for (let round = 1; round <= options.rounds; round++) {
    for (const config of configs) {
      runs.push(await runOnce(config, round, options, loadgen, pinning, threads, progress, runIndex++))
    }
  }
  progress.done()
  await stopAll()

  const summaries = configs.map((config) => summarize(config, runs.filter((r) => r.config === config.id)))
  const sequential = summaries.find((s) => s.id === 'switchyard-seq')
  for (const s of summaries) {
    s.speedup = sequential !== undefined && sequential.requestsPerSec > 0 ? s.requestsPerSec / sequential.requestsPerSec : null
  }
  const logTax = accessLogTax(summaries)
  if (logTax !== '') notes.push(logTax)
  const relay = summaries.find((s) => s.id === 'node-relay')
  if (relay !== undefined && Number.isFinite(relay.cpuMicrosPerRequest)) {
    notes.push(`the relay row does no HTTP at all: ${relay.cpuMicrosPerRequest.toFixed(1)} CPU µs/req is the floor of Node's socket I/O; ` +
      'switchyard\'s distance from it is its own HTTP work, pooling and bookkeeping.')
  }
  const versusHttpProxy = sequentialOverHttpProxy(summaries)
  if (versusHttpProxy !== null) {
    notes.push(`switchyard seq answers ${formatNumber(versusHttpProxy.requestsPerSec, 2)}× http-proxy's requests/s ` +
      `(#18's goal: ≥ 4×); http-proxy spends ${formatNumber(versusHttpProxy.cpuMicrosPerRequest, 2)}× switchyard seq's CPU µs per request.`)
  }
  for (const s of summaries) {
    const failed = runs.find((r) => r.config === s.id && r.error !== null)
    if (failed !== undefined) notes.push(`${s.label}: ${s.failedRuns} run(s) failed, first: ${failed.error?.split('\n')[0]}`)
    if (s.badExits.length > 0) notes.push(`${s.label}: on SIGTERM exited with ${s.badExits.join(', ')} (expected 0)`)
  }
  notes.push('errors = non-2xx + socket errors, summed over rounds; spread = half the min..max range of req/s.',
    'CPU µs/req and CPU % = the balancer\'s own processes (all threads), from /proc/PID/stat.')
  if (loadgen.name === 'autocannon') notes.push('autocannon reports latency in whole milliseconds.')

  // Files
  const stamp = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')
  const resultsDir = path.join(ROOT, 'bench', 'results')
  fs.mkdirSync(resultsDir, { recursive: true })
  const jsonPath = path.join(resultsDir, `${stamp}.json`)
  const svgPath = path.join(resultsDir, `${stamp}.svg`)
  const report = {
    schema: 'switchyard-bench-load/1',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    git: gitDescribe(),
    machine: {
      cpus: cpuCount,
      allowedCpus: allowedCpus(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      kernel: os.release(),
      node: process.version,
      clockTicksPerSec: CLOCK_TICKS_PER_SEC,
    },
    loadgen: { name: loadgen.name, version: loadgen.version, threads: loadgen.name === 'wrk' ? threads : 1 },
    pinning,
    options: { ...options, balancerScript: path.relative(ROOT, options.balancerScript) },
    upstreams: { kind: upstreams.kind, count: upstreams.ports.length },
    peerThreads,
    notes,
    summaries,
    seqOverHttpProxy: versusHttpProxy,
    scaling: scaling === null ? null : { ...scaling, rows: scalingRows(summaries, scaling.steps) },
    runs,
  }
  fs.writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`)
  fs.writeFileSync(svgPath, renderChart(scaling !== null
    ? scalingChartInput(summaries, scaling, loadgen, options, pinning)
    : chartInput(summaries, loadgen, options, pinning)))

  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
    for (const note of notes) process.stderr.write(`[bench] ${note}\n`)
  } else {
    process.stdout.write(renderTable(summaries, [], notes))
    if (scaling !== null) process.stdout.write(`\n${renderScaling(scalingRows(summaries, scaling.steps), scaling)}`)
    process.stdout.write(`\nresults: ${path.relative(process.cwd(), jsonPath)}\n` +
      `chart:   ${path.relative(process.cwd(), svgPath)}\n`)
  }
  if (runs.every((r) => !r.ok)) process.exitCode = 1
}

function chartInput (summaries: Summary[], loadgen: LoadGenerator, options: Options, pinning: Pinning): ChartInput {
  return {
    title: 'switchyard: sequential vs worker threads',
    subtitle: `${loadgen.name}, ${options.connections} connections, ${options.durationS} s × ${options.rounds} rounds; ` +
      `${os.availableParallelism()} CPUs; ${pinning.enabled ? pinning.description : 'not pinned'}`,
    points: summaries.filter((s) => s.kind === 'switchyard' && !s.accessLog).map((s) => ({
      workers: s.workers as number,
      requestsPerSec: s.requestsPerSec,
      requestsPerSecMin: s.requestsPerSecMin,
      requestsPerSecMax: s.requestsPerSecMax,
      cpuUsPerRequest: s.cpuMicrosPerRequest,
      cpuUsPerRequestMin: s.cpuMicrosPerRequestMin,
      cpuUsPerRequestMax: s.cpuMicrosPerRequestMax,
    })),
    references: summaries.filter((s) => s.kind === 'peer' || s.accessLog).map((s) => ({
      label: s.label, requestsPerSec: s.requestsPerSec, cpuUsPerRequest: s.cpuMicrosPerRequest,
    })),
  }
}

/**
 * #18 states a goal as a multiple of http-proxy's requests/s: sequential switchyard's req/s over
 * http-proxy's, and http-proxy's CPU µs per request over switchyard's (both > 1 when switchyard is
 * ahead). null unless both ran.
 */
function sequentialOverHttpProxy (summaries: Summary[]): { requestsPerSec: number, cpuMicrosPerRequest: number } | null {
  const sequential = summaries.find((s) => s.id === 'switchyard-seq')
  const httpProxy = summaries.find((s) => s.id === 'http-proxy')
  if (sequential === undefined || httpProxy === undefined) return null
  if (!(sequential.requestsPerSec > 0 && httpProxy.requestsPerSec > 0)) return null
  return {
    requestsPerSec: sequential.requestsPerSec / httpProxy.requestsPerSec,
    cpuMicrosPerRequest: httpProxy.cpuMicrosPerRequest / sequential.cpuMicrosPerRequest,
  }
}

// ---------------------------------------------------------------------------------------------
// --access-log: the logging tax; --scaling: speedup and efficiency per worker count
// ---------------------------------------------------------------------------------------------

/** "access log: +x µs/req at ×1 …" from the pairs of configurations with and without it. */
function accessLogTax (summaries: Summary[]): string {
  const parts: string[] = []
  for (const on of summaries.filter((s) => s.accessLog)) {
    // each configuration with the log on ("…-log") next to the same one without
    const off = summaries.find((s) => !s.accessLog && `${s.id}-log` === on.id)
    if (off === undefined || !Number.isFinite(on.cpuMicrosPerRequest) || !Number.isFinite(off.cpuMicrosPerRequest)) continue
    const delta = on.cpuMicrosPerRequest - off.cpuMicrosPerRequest
    parts.push(`${off.label}: ${delta >= 0 ? '+' : ''}${formatNumber(delta, 1)} µs/req`)
  }
  return parts.length === 0
    ? ''
    : `access log costs, in CPU µs per request (switchyard: the default JSON lines to stdout; nginx: combined, 64 KiB buffer, to a FIFO; both read by the bench): ${parts.join('; ')}`
}

interface ScalingPlan {
  steps: number[]
  balancerCores: number
  /** fewer than 4 CPUs: the sweep runs, but scaling cannot be judged */
  judgeable: boolean
  description: string
}

/** Worker counts 1, 2, 4 … up to the balancer's cores (and that count itself). Nothing here assumes a core count. */
function planScaling (balancerCores: number, cpuCount: number, pinning: Pinning): ScalingPlan {
  const steps: number[] = []
  for (let n = 1; n <= balancerCores; n *= 2) steps.push(n)
  if (steps[steps.length - 1] !== balancerCores) steps.push(balancerCores)
  // one balancer core: 2 workers still show what sharing one core costs
  if (steps.length === 1) steps.push(2)
  const judgeable = cpuCount >= 4 && balancerCores >= 2
  const where = pinning.enabled
    ? `balancer on CPU ${formatCpuList(pinning.balancerCpus ?? [])}, load generator and upstreams reserved CPU ${formatCpuList(pinning.loadCpus ?? [])}`
    : 'not pinned: the load generator competes with the balancer for the same CPUs'
  return {
    steps,
    balancerCores,
    judgeable,
    description: `scaling: --workers ${steps.join(', ')}; ${where}` +
      (judgeable
        ? ''
        : `\nscaling: this machine has ${cpuCount} CPUs (${balancerCores} for the balancer): CPU scaling ` +
        'CANNOT be judged here; the sweep only shows that it runs. Run it on a machine with 4 or more CPUs (8+ to see a curve).'),
  }
}

interface ScalingRow {
  workers: number
  requestsPerSec: number
  speedup: number
  efficiency: number
  cpuMicrosPerRequest: number
  p99Ms: number
  nginxRequestsPerSec: number
  nginxSpeedup: number
  nginxEfficiency: number
}

function scalingRows (summaries: Summary[], steps: number[]): ScalingRow[] {
  const ours = (n: number): Summary | undefined => summaries.find((s) => s.kind === 'switchyard' && !s.accessLog && s.workers === n)
  const nginx = (n: number): Summary | undefined => summaries.find((s) => s.id === `nginx-scaling-${n}`)
  const base = ours(1)?.requestsPerSec ?? Number.NaN
  const nginxBase = nginx(1)?.requestsPerSec ?? Number.NaN
  return steps.map((n) => {
    const rps = ours(n)?.requestsPerSec ?? Number.NaN
    const nginxRps = nginx(n)?.requestsPerSec ?? Number.NaN
    return {
      workers: n,
      requestsPerSec: rps,
      speedup: rps / base,
      efficiency: rps / base / n,
      cpuMicrosPerRequest: ours(n)?.cpuMicrosPerRequest ?? Number.NaN,
      p99Ms: ours(n)?.p99Ms ?? Number.NaN,
      nginxRequestsPerSec: nginxRps,
      nginxSpeedup: nginxRps / nginxBase,
      nginxEfficiency: nginxRps / nginxBase / n,
    }
  })
}

function renderScaling (rows: ScalingRow[], plan: ScalingPlan): string {
  const columns = ['workers', 'req/s', 'speedup', 'efficiency', 'CPU µs/req', 'p99 ms', 'nginx req/s', 'nginx speedup', 'nginx eff.']
  const cells = rows.map((r) => [
    String(r.workers), formatNumber(r.requestsPerSec, 0), `${formatNumber(r.speedup, 2)}×`, `${formatNumber(100 * r.efficiency, 0)}%`,
    formatNumber(r.cpuMicrosPerRequest, 1), formatNumber(r.p99Ms, 2), formatNumber(r.nginxRequestsPerSec, 0),
    `${formatNumber(r.nginxSpeedup, 2)}×`, `${formatNumber(100 * r.nginxEfficiency, 0)}%`,
  ])
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)))
  const line = (row: string[]): string => row.map((c, i) => c.padStart(widths[i])).join('  ')
  return [
    'CPU scaling (speedup = req/s over 1 worker; efficiency = speedup / workers; ideal = 100%)',
    line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), '',
    ...plan.description.split('\n'),
  ].join('\n') + '\n'
}

function scalingChartInput (summaries: Summary[], plan: ScalingPlan, loadgen: LoadGenerator, options: Options,
  pinning: Pinning): ChartInput {
  const base = chartInput(summaries, loadgen, options, pinning)
  const rows = scalingRows(summaries, plan.steps)
  const first = rows[0]
  return {
    ...base,
    title: `switchyard: CPU scaling${plan.judgeable ? '' : ` (${os.availableParallelism()} CPUs: cannot be judged here)`}`,
    points: base.points.filter((p) => plan.steps.includes(p.workers)),
    references: base.references.filter((r) => !r.label.includes('worker_processes')),
    series: [
      { label: 'ideal: 1 worker\'s req/s × workers, same CPU per request', dash: '2 4', requestsPerSec: rows.map((r) => first.requestsPerSec * r.workers), cpuUsPerRequest: rows.map(() => first.cpuMicrosPerRequest) },
      { label: 'nginx, worker_processes = N', dash: '6 4', requestsPerSec: rows.map((r) => r.nginxRequestsPerSec), cpuUsPerRequest: summariesCpu(summaries, plan.steps) },
    ],
    xLabel: 'worker threads (nginx: worker processes)',
  }
}

function summariesCpu (summaries: Summary[], steps: number[]): number[] {
  return steps.map((n) => summaries.find((s) => s.id === `nginx-scaling-${n}`)?.cpuMicrosPerRequest ?? Number.NaN)
}

function gitDescribe (): string | null {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'],
      { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${commit}-dirty` : commit
  } catch {
    return null
  }
}

async function interrupted (signal: string, code: number): Promise<void> {
  if (stopping) return
  stopping = true
  process.stderr.write(`\n[bench] ${signal}: stopping everything\n`)
  await stopAll()
  process.exit(code)
}

process.on('exit', killAllSync)

main().catch(async (err: Error) => {
  process.stderr.write(`\n[bench] ${err.message}\n`)
  await stopAll()
  process.exit(1)
})
