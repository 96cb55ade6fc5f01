/**
 * Command-line flags -> config overrides. Includes balancebeam's flags, so a
 * balancebeam command line runs unchanged.
 */
import { existsSync } from 'node:fs'
import Ajv, { type ValidateFunction } from 'ajv'
import { schemaDefault, schemaNode } from './config/defaults'
import { algorithms, logLevels } from './config/schema'
import { parseHostPort } from './config/types'

/** balancebeam's listen address when no lb.json is used (a flag default, not an lb.json one). */
export const BIND_WITHOUT_FILE = '0.0.0.0:1100'
/** --max-requests-per-minute: balancebeam's fixed window of one minute. */
const MINUTE_MS = 60_000

export interface CliOptions {
  configPath: string | null
  overrides: Record<string, unknown>
  help: boolean
  version: boolean
  /** --check: validate the configuration, bind nothing, exit 0 or 1. */
  check: boolean
}

export class CliError extends Error {
  readonly code = 'SWY_ERR_CLI'
}

const DESCRIPTION_COLUMN = 42
const HELP_WIDTH = 110

/** `lead` then the schema's list of values, wrapped under the description column. */
function valueList (lead: string, values: readonly string[]): string {
  let out = lead
  let width = DESCRIPTION_COLUMN + lead.length
  values.forEach((value, i) => {
    const word = value + (i < values.length - 1 ? ',' : '')
    const gap = i === 0 ? '' : ' '
    if (width + gap.length + word.length > HELP_WIDTH) {
      out += '\n' + ' '.repeat(DESCRIPTION_COLUMN) + word
      width = DESCRIPTION_COLUMN + word.length
    } else {
      out += gap + word
      width += gap.length + word.length
    }
  })
  return out
}

export const usage = `Usage: switchyard [options]

A load-balancing reverse proxy for HTTP/1.1 on Node.js worker threads.

Options:
  -c, --config PATH                       lb.json to load (default: ./lb.json when no --upstream is given)
  -b, --bind HOST:PORT                    address to listen on (lb.json "listen"; default ${BIND_WITHOUT_FILE} without a file)
  -u, --upstream HOST:PORT                an upstream server; repeat for more (replaces lb.json "upstreams")
      --active-health-check-interval S    seconds between active health checks; enables them (default ${schemaDefault('healthCheck.active.intervalMs') as number / 1000})
      --active-health-check-path PATH     path the active health check requests; enables them (default ${String(schemaDefault('healthCheck.active.path'))})
      --max-requests-per-minute N         per-client-IP limit: fixed window of ${MINUTE_MS / 1000} s (0 = off)
  -w, --workers N                         worker threads; 0 = sequential mode (one thread)
      --algorithm NAME                    ${valueList('balancing algorithm: ', algorithms)}
      --admin HOST:PORT                   admin API and dashboard listener
      --log-level LEVEL                   ${valueList('', logLevels)}
      --no-access-log                     turn the per-request access log off
      --check                             validate the configuration (and the files it names), print
                                          "configuration OK" or every error, exit 0 or 1; binds nothing
  -h, --help                              show this help
  -v, --version                           print the version

Flags override the file. Signals: SIGTERM/SIGINT drain and exit (a second one exits at once);
SIGHUP re-reads the config file and applies it without dropping connections.
`

function setPath (target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1]] = value
}

function integer (flag: string, value: string, min: number): number {
  if (!/^\d+$/.test(value)) throw new CliError(`${flag} expects a whole number, got "${value}"`)
  const n = Number(value)
  if (n < min) throw new CliError(`${flag} must be at least ${min}`)
  return n
}

// a flag's value is checked against the schema node of the key it sets, so a
// bad value is reported as the flag (exit 2), not as a JSON path of a file
const flagAjv = new Ajv({ strict: false })
const flagValidators = new Map<string, ValidateFunction>()

function flagValue<T> (flag: string, value: T, key: string): T {
  let validate = flagValidators.get(key)
  if (validate === undefined) {
    validate = flagAjv.compile(schemaNode(key))
    flagValidators.set(key, validate)
  }
  const node = schemaNode(key) as { enum?: readonly string[], pattern?: string }
  let problem = ''
  if (!validate(value)) {
    const err = (validate.errors ?? [])[0]
    if (err?.keyword === 'enum' && node.enum !== undefined) problem = `must be one of ${node.enum.join(', ')}`
    else if (err?.keyword === 'pattern') problem = /listen$|address$/.test(key) ? 'expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080' : 'expected an absolute path starting with /'
    else problem = err?.message ?? 'invalid value'
  } else if (/listen$|address$/.test(key)) {
    const { port } = parseHostPort(value as string)
    if (port > 65535) problem = `port ${port} is out of range 0-65535`
    else if (port === 0 && key.endsWith('address')) problem = 'an upstream port must not be 0'
  }
  if (problem !== '') throw new CliError(`${flag} ${JSON.stringify(value)}: ${problem}`)
  return value
}

export function parseArgs (argv: readonly string[], cwd = process.cwd()): CliOptions {
  const out: CliOptions = { configPath: null, overrides: {}, help: false, version: false, check: false }
  const upstreams: string[] = []
  const o = out.overrides
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]
    let inline: string | null = null
    const eq = arg.indexOf('=')
    if (arg.startsWith('--') && eq !== -1) { inline = arg.slice(eq + 1); arg = arg.slice(0, eq) }
    const value = (): string => {
      if (inline !== null) return inline
      const v = argv[++i]
      if (v === undefined) throw new CliError(`${arg} needs a value`)
      return v
    }
    switch (arg) {
      case '-h': case '--help': out.help = true; break
      case '-v': case '--version': out.version = true; break
      case '--check': out.check = true; break
      case '-c': case '--config': out.configPath = value(); break
      case '-b': case '--bind': o.listen = flagValue(arg, value(), 'listen'); break
      case '-u': case '--upstream': upstreams.push(flagValue(arg, value(), 'upstreams[].address')); break
      case '-w': case '--workers': o.workers = flagValue(arg, integer(arg, value(), 0), 'workers'); break
      case '--active-health-check-interval': setPath(o, ['healthCheck', 'active', 'intervalMs'], flagValue(arg, integer(arg, value(), 1) * 1000, 'healthCheck.active.intervalMs')); break
      case '--active-health-check-path': setPath(o, ['healthCheck', 'active', 'path'], flagValue(arg, value(), 'healthCheck.active.path')); break
      case '--max-requests-per-minute': {
        const n = integer(arg, value(), 0)
        if (n > 0) flagValue(arg, n, 'rateLimit.maxRequests')
        o.rateLimit = n === 0 ? null : { algorithm: 'fixed-window', maxRequests: n, windowMs: MINUTE_MS }
        break
      }
      case '--algorithm': setPath(o, ['balancing', 'algorithm'], flagValue(arg, value(), 'balancing.algorithm')); break
      case '--admin': setPath(o, ['admin', 'listen'], flagValue(arg, value(), 'admin.listen')); break
      case '--log-level': setPath(o, ['log', 'level'], flagValue(arg, value(), 'log.level')); break
      case '--no-access-log': setPath(o, ['log', 'access'], false); break
      default: throw new CliError(`unknown option ${arg} (see --help)`)
    }
  }
  if (upstreams.length > 0) o.upstreams = upstreams.map((address) => ({ address }))
  if (out.configPath === null && upstreams.length === 0 && existsSync(`${cwd}/lb.json`)) out.configPath = `${cwd}/lb.json`
  return out
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Deep-merge CLI overrides into the file's object; `null` removes a section. */
export function mergeOverrides (base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(overrides)) {
    if (value === null) delete out[key]
    else if (isObject(value) && isObject(out[key])) out[key] = mergeOverrides(out[key] as Record<string, unknown>, value)
    else out[key] = value
  }
  return out
}

/** Without a file, flags alone make the config (balancebeam style). */
export function baseWithoutFile (): Record<string, unknown> {
  return { listen: BIND_WITHOUT_FILE }
}
