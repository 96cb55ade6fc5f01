/**
 * Load generators for bench/load.ts: wrk when it is on PATH, else autocannon (a devDependency), each
 * run as its own process (pinned like the upstreams) and its output parsed into one shape.
 *
 * wrk:        `wrk -t T -c C -d Ds --latency URL`; text output, latency percentiles in us/ms/s.
 *             Its "Non-2xx or 3xx responses" counts status >= 400 (wrk's own definition).
 * autocannon: `node autocannon.js --json -n -c C -d D URL`; latencies are whole milliseconds
 *             (HDR histogram at 1 ms resolution), so p50 on a fast path reads 0 or 1 ms.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ROOT, spawnTracked, versionOf, which, indentTail } from './peers'

export interface LoadResult {
  /** Responses received (any status). */
  requests: number
  durationS: number
  requestsPerSec: number
  p50Ms: number
  p99Ms: number
  non2xx: number
  /** connect/read/write errors and timeouts */
  socketErrors: number
}

export interface LoadOptions {
  url: string
  connections: number
  durationS: number
  /** wrk threads (ignored by autocannon, which is single-threaded here). */
  threads: number
  cpus: number[] | null
  /** Extra request header lines (`Connection: close`); wrk only. */
  headers?: string[]
}

export interface LoadGenerator {
  name: 'wrk' | 'autocannon'
  version: string
  run(options: LoadOptions): Promise<LoadResult>
}

export function pickLoadGenerator (prefer: 'wrk' | 'autocannon' | null): LoadGenerator {
  const wrk = which('wrk')
  if (prefer === 'wrk' && wrk === null) throw new Error('--loadgen wrk: wrk is not on PATH (apt-get install -y wrk)')
  if (wrk !== null && prefer !== 'autocannon') return wrkGenerator(wrk)
  return autocannonGenerator()
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

function wrkGenerator (binary: string): LoadGenerator {
  return {
    name: 'wrk',
    version: versionOf(binary, ['-v']).replace(/\s*Copyright.*$/, '').replace(/^wrk\s+/, ''),
    async run (options) {
      const args = [
        '-t', String(Math.max(1, Math.min(options.threads, options.connections))),
        '-c', String(options.connections),
        '-d', `${Math.max(1, Math.round(options.durationS))}s`,
        ...(options.headers ?? []).flatMap((h) => ['-H', h]),
        '--latency', options.url,
      ]
      const output = await runToEnd(binary, args, options.cpus, 'wrk')
      return parseWrk(output)
    },
  }
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

function wrkTimeMs (value: string, unit: string): number {
  return Number.parseFloat(value) * (UNIT_MS[unit] ?? Number.NaN)
}

export function parseWrk (output: string): LoadResult {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(output)
  const rate = /Requests\/sec:\s*([\d.]+)/.exec(output)
  if (total === null || rate === null) throw new Error(`cannot parse wrk output:\n${output}`)
  const percentile = (p: string): number => {
    const match = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(output)
    return match === null ? Number.NaN : wrkTimeMs(match[1], match[2])
  }
  let socketErrors = 0
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  if (socket !== null) for (let i = 1; i <= 4; i++) socketErrors += Number.parseInt(socket[i], 10)
  const non2xx = /Non-2xx or 3xx responses:\s*(\d+)/.exec(output)
  return {
    requests: Number.parseInt(total[1], 10),
    durationS: wrkTimeMs(total[2], total[3]) / 1000,
    requestsPerSec: Number.parseFloat(rate[1]),
    p50Ms: percentile('50'),
    p99Ms: percentile('99'),
    non2xx: non2xx === null ? 0 : Number.parseInt(non2xx[1], 10),
    socketErrors,
  }
}

// ---------------------------------------------------------------------------------------------
// autocannon
// ---------------------------------------------------------------------------------------------

function autocannonGenerator (): LoadGenerator {
  const script = path.join(ROOT, 'node_modules', 'autocannon', 'autocannon.js')
  let version = ''
  try {
    version = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'autocannon', 'package.json'), 'utf8')).version
  } catch {
    throw new Error(`autocannon not found at ${script}: neither wrk nor autocannon is available`)
  }
  return {
    name: 'autocannon',
    version,
    async run (options) {
      if ((options.headers ?? []).length > 0) throw new Error('extra request headers (--connection-close) need wrk')
      const args = [script, '--json', '-n',
        '-c', String(options.connections), '-d', String(options.durationS), options.url]
      const output = await runToEnd(process.execPath, args, options.cpus, 'autocannon')
      return parseAutocannon(output)
    },
  }
}

interface AutocannonJson {
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  latency: { p50: number; p99: number }
  requests: { average: number; total: number }
}

export function parseAutocannon (output: string): LoadResult {
  const start = output.indexOf('{')
  let json: AutocannonJson
  try {
    json = JSON.parse(output.slice(start)) as AutocannonJson
  } catch {
    throw new Error(`cannot parse autocannon output:\n${output.slice(0, 2000)}`)
  }
  return {
    requests: json.requests.total,
    durationS: json.duration,
    requestsPerSec: json.duration > 0 ? json.requests.total / json.duration : 0,
    p50Ms: json.latency.p50,
    p99Ms: json.latency.p99,
    non2xx: json.non2xx,
    // autocannon's `errors` already includes its `timeouts`
    socketErrors: json.errors,
  }
}

// ---------------------------------------------------------------------------------------------

async function runToEnd (command: string, args: string[], cpus: number[] | null, name: string): Promise<string> {
  const managed = spawnTracked(command, args, { name, cpus })
  const status = await managed.exited
  if (status !== 0) {
    throw new Error(`${name} exited with ${status}\n  command: ${managed.argv.join(' ')}\n${indentTail(managed)}`)
  }
  return managed.stdoutTail
}
