/**
 * Memory under sustained load (#18): `npm run bench -- --soak [--minutes 10] [--workers 2]
 * [--connections 64] [--sample-s 10] [--access-log] [--json]`.
 *
 * One switchyard (worker mode by default) behind back-to-back load-generator runs of `--sample-s`
 * seconds each for `--minutes`; after each run the balancer's resident memory (VmRSS of the whole
 * process, every thread) and its peak (VmHWM) are read from /proc. The report is a row per sample
 * (requests/s, p99, RSS) and a verdict on flatness: the least-squares slope of RSS over the second
 * half of the run (after the heaps have grown to their working size), in MB per minute, and the
 * last sample against the first half's highest. A leak of even a few bytes per request shows as a
 * steady slope at tens of thousands of requests per second; garbage-collector sawtooth does not.
 *
 * Pinning as in the load bench: the balancer on the first half of the allowed CPUs, wrk and the
 * upstreams (nginx `return 200` when installed, else bench/upstream.js) on the rest.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  ROOT, formatCpuList, spawnTracked, stopProcess, stopAll, freePort, waitForPort, halfPinning, startBenchUpstreams, type Managed,
} from './peers'
import { pickLoadGenerator } from './loadgen'
import { cpuMicrosOfTree } from './proc-cpu'

interface SoakOptions {
  minutes: number
  workers: number
  connections: number
  sampleS: number
  accessLog: boolean
  json: boolean
  /** balancer entry (default dist/src/cli.js), for an A/B with another build */
  balancerScript: string
}

export interface SoakSample {
  /** Seconds since the load started, at the end of this sample. */
  atS: number
  requestsPerSec: number
  p99Ms: number
  errors: number
  rssMb: number
  peakRssMb: number
  cpuMicrosPerRequest: number
}

export interface SoakVerdict {
  peakRssMb: number
  firstHalfMaxMb: number
  lastMb: number
  /** Least-squares slope of RSS over the second half, MB per minute. */
  slopeMbPerMin: number
  flat: boolean
}

/** A slope under this (MB/min) over the second half, and no new high past 5% of the first half's, is flat. */
const FLAT_SLOPE_MB_PER_MIN = 0.5

function parseArgs (argv: string[]): SoakOptions {
  const options: SoakOptions = { minutes: 10, workers: 2, connections: 64, sampleS: 10, accessLog: false, json: false, balancerScript: path.join(ROOT, 'dist/src/cli.js') }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const number = (): number => {
      const n = Number(argv[++i])
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${arg}: a number > 0`)
      return n
    }
    if (arg === '--soak') continue
    else if (arg === '--minutes') options.minutes = number()
    else if (arg === '--workers') options.workers = Math.floor(number())
    else if (arg === '--connections') options.connections = Math.floor(number())
    else if (arg === '--sample-s') options.sampleS = number()
    else if (arg === '--access-log') options.accessLog = true
    else if (arg === '--json') options.json = true
    else if (arg === '--balancer-script') options.balancerScript = path.resolve(argv[++i])
    else throw new Error(`--soak: unknown option ${arg} (--minutes, --workers, --connections, --sample-s, --access-log, --balancer-script, --json)`)
  }
  return options
}

/** VmRSS and VmHWM of `pid` in MB (kB in /proc/PID/status). */
function memoryOf (pid: number): { rssMb: number, peakRssMb: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
    return m === null ? Number.NaN : Number(m[1]) / 1024
  }
  return { rssMb: kb('VmRSS'), peakRssMb: kb('VmHWM') }
}

/** Flatness over the second half of the samples (see the file comment). */
export function soakVerdict (samples: readonly SoakSample[]): SoakVerdict {
  const half = Math.floor(samples.length / 2)
  const first = samples.slice(0, Math.max(1, half))
  const second = samples.slice(half)
  const firstHalfMaxMb = Math.max(...first.map((s) => s.rssMb))
  const lastMb = samples[samples.length - 1].rssMb
  let slopeMbPerMin = 0
  if (second.length >= 2) {
    const n = second.length
    const mx = second.reduce((a, s) => a + s.atS, 0) / n
    const my = second.reduce((a, s) => a + s.rssMb, 0) / n
    let num = 0
    let den = 0
    for (const s of second) { num += (s.atS - mx) * (s.rssMb - my); den += (s.atS - mx) ** 2 }
    slopeMbPerMin = den === 0 ? 0 : (num / den) * 60
  }
  return {
    peakRssMb: Math.max(...samples.map((s) => s.peakRssMb)),
    firstHalfMaxMb,
    lastMb,
    slopeMbPerMin,
    flat: slopeMbPerMin < FLAT_SLOPE_MB_PER_MIN && lastMb <= firstHalfMaxMb * 1.05,
  }
}

export async function runSoakBench (argv: string[]): Promise<void> {
  const options = parseArgs(argv)
  const script = options.balancerScript
  if (!fs.existsSync(script)) throw new Error(`${script} is missing: build first (npm run build)`)
  const loadgen = pickLoadGenerator(null)
  const { pinned, balancerCpus, loadCpus } = halfPinning()
  const log = (line: string): void => { if (!options.json) process.stdout.write(line + '\n') }
  const upstreams = await startBenchUpstreams(loadCpus)
  let balancer: Managed | null = null
  const samples: SoakSample[] = []
  try {
    const port = await freePort()
    const args = [script, '--bind', `127.0.0.1:${port}`, '--workers', String(options.workers)]
    for (const p of upstreams.ports) args.push('--upstream', `127.0.0.1:${p}`)
    if (!options.accessLog) args.push('--log-level', 'warn', '--no-access-log')
    balancer = spawnTracked(process.execPath, args, { name: 'switchyard', cpus: balancerCpus })
    await waitForPort(balancer, port, 20_000)
    log(`switchyard soak: --workers ${options.workers}, ${options.connections} connections, ${options.minutes} min in ` +
      `${options.sampleS} s samples, ${loadgen.name}, ${upstreams.kind} upstreams` +
      (pinned ? `; balancer on CPU ${formatCpuList(balancerCpus as number[])}, load on CPU ${formatCpuList(loadCpus as number[])}` : '; no pinning'))
    const idle = memoryOf(balancer.pid)
    log(`idle RSS ${idle.rssMb.toFixed(1)} MB`)
    log('   at s    req/s   p99 ms  errors  CPU µs/req  RSS MB  peak MB')
    const count = Math.max(2, Math.round((options.minutes * 60) / options.sampleS))
    const load = { url: `http://127.0.0.1:${port}/`, connections: options.connections, threads: loadCpus?.length ?? 1, cpus: loadCpus }
    const began = Date.now()
    for (let i = 0; i < count; i++) {
      const cpuBefore = cpuMicrosOfTree(balancer.pid)
      const r = await loadgen.run({ ...load, durationS: options.sampleS })
      const cpu = cpuMicrosOfTree(balancer.pid) - cpuBefore
      if (balancer.exitStatus !== null) throw new Error(`switchyard exited (${balancer.exitStatus}) during the soak`)
      const m = memoryOf(balancer.pid)
      const sample: SoakSample = {
        atS: (Date.now() - began) / 1000,
        requestsPerSec: r.requestsPerSec,
        p99Ms: r.p99Ms,
        errors: r.non2xx + r.socketErrors,
        rssMb: m.rssMb,
        peakRssMb: m.peakRssMb,
        cpuMicrosPerRequest: r.requests > 0 ? cpu / r.requests : Number.NaN,
      }
      samples.push(sample)
      log(`${sample.atS.toFixed(0).padStart(7)}  ${sample.requestsPerSec.toFixed(0).padStart(7)}  ${sample.p99Ms.toFixed(2).padStart(7)}  ` +
        `${String(sample.errors).padStart(6)}  ${sample.cpuMicrosPerRequest.toFixed(1).padStart(10)}  ${sample.rssMb.toFixed(1).padStart(6)}  ${sample.peakRssMb.toFixed(1).padStart(7)}`)
    }
    const verdict = soakVerdict(samples)
    const summary = `peak RSS ${verdict.peakRssMb.toFixed(1)} MB; first half's highest ${verdict.firstHalfMaxMb.toFixed(1)} MB, last ` +
      `${verdict.lastMb.toFixed(1)} MB; slope over the second half ${verdict.slopeMbPerMin.toFixed(2)} MB/min: ` +
      (verdict.flat ? 'flat' : `NOT flat (flat: under ${FLAT_SLOPE_MB_PER_MIN} MB/min and no new high past 5%)`)
    log(summary)
    const result = { schema: 'switchyard-bench-soak/1', options, idleRssMb: idle.rssMb, samples, verdict }
    const dir = path.join(ROOT, 'bench', 'results')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `soak-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`)
    fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
    if (options.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
    else log(`results: ${path.relative(ROOT, file)}`)
  } finally {
    if (balancer !== null) await stopProcess(balancer)
    for (const p of upstreams.processes) await stopProcess(p)
    await stopAll()
  }
}
