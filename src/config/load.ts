/**
 * read -> parse -> validate (ajv, defaults applied to a copy) -> semantic checks -> freeze.
 * Every problem is reported with its JSON path; nothing is bound before this passes.
 * Defaults come from the schema alone (ajv `useDefaults`); none is written here
 * except `workers`, which depends on the machine.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import Ajv, { type ErrorObject } from 'ajv'
import { configSchema } from './schema'
import type { Config } from './types'
import { parseHostPort } from './types'
import { ConfigError } from '../errors'
import { firewallConfigErrors } from '../firewall/rules'
import { resilienceConfigErrors } from '../proxy/resilience-config'
import { routingConfigErrors, duplicateKeysIn } from '../routing/check'
import type { FirewallConfig, ListenerConfig } from './types'
import { MAX_ARENA_BYTES } from '../cache/layout'
import { findJsonSyntaxError } from './json-syntax'
import { classifyName, H_OTHER } from '../http/header-names'

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true })
const validate = ajv.compile(configSchema)

function formatAjvError (err: ErrorObject): string {
  const path = err.instancePath === '' ? '/' : err.instancePath
  switch (err.keyword) {
    case 'additionalProperties':
      return `${path}: unknown key "${String(err.params.additionalProperty)}"`
    case 'enum':
      return `${path}: must be one of ${(err.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    case 'pattern':
      return `${path}: ${describePattern(err.instancePath)}`
    default:
      return `${path}: ${err.message ?? err.keyword}`
  }
}

function describePattern (path: string): string {
  if (/listen$|address$/.test(path)) return 'expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080'
  if (/cookie$/.test(path)) return 'expected a cookie-name token'
  if (/path$/.test(path)) return 'expected an absolute path starting with /'
  return 'see README lb.json reference'
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A string at `obj[key]`, or undefined when the schema pass already reported it as something else. */
function str (obj: unknown, key: string): string | undefined {
  const v = isObject(obj) ? obj[key] : undefined
  return typeof v === 'string' ? v : undefined
}

function num (obj: unknown, key: string): number | undefined {
  const v = isObject(obj) ? obj[key] : undefined
  return typeof v === 'number' ? v : undefined
}

/** The largest cache entry the shared store can hold: half its arena (src/cache/store.ts rounds the arena to 8 bytes). */
export function cacheEntryLimit (maxBytes: number): number {
  return (Math.floor(Math.min(maxBytes, MAX_ARENA_BYTES) / 8) * 8) >> 1
}

/**
 * Checks JSON Schema cannot express. They run on the defaulted copy even when
 * the schema pass found errors (one pass reports everything), so each reads
 * its values defensively: a value of the wrong shape was reported already.
 */
function semanticErrors (config: unknown, raw: unknown, warnings: string[]): string[] {
  const errors: string[] = []
  if (!isObject(config)) return errors
  const checkPort = (value: string | undefined, path: string): void => {
    if (value === undefined) return
    const { port } = parseHostPort(value)
    if (Number.isInteger(port) && !(port >= 0 && port <= 65535)) errors.push(`${path}: port ${port} is out of range 0-65535`)
  }
  // `listen` as a string is one plain listener; as an array, each entry (the schema pass reported bad shapes)
  const listeners = (typeof config.listen === 'string'
    ? [{ address: config.listen, httpsRedirect: false }]
    : (Array.isArray(config.listen) ? (config.listen as unknown[]).filter(isObject) : [])) as unknown as ListenerConfig[]
  const listenPath = (i: number): string => typeof config.listen === 'string' ? '/listen' : `/listen/${i}/address`
  const bound = new Map<string, number>()
  listeners.forEach((l, i) => {
    const address = str(l, 'address')
    if (address === undefined) return
    checkPort(address, listenPath(i))
    const prev = bound.get(address)
    if (prev !== undefined && parseHostPort(address).port !== 0) errors.push(`${listenPath(i)}: duplicate of ${listenPath(prev)}`)
    bound.set(address, i)
    const tls = isObject(l.tls) ? l.tls : undefined
    if (tls !== undefined && (!Array.isArray(tls.certificates) || tls.certificates.length === 0) && tls.acme === undefined) {
      errors.push(`/listen/${i}/tls: needs certificates (at least one certFile + keyFile) or acme`)
    }
    if (l.httpsRedirect === true && tls !== undefined) errors.push(`/listen/${i}/httpsRedirect: only on a plain listener (this one has tls)`)
    if (l.httpsRedirect === true && !listeners.some((o) => isObject(o.tls))) errors.push(`/listen/${i}/httpsRedirect: needs a TLS listener to redirect to`)
  })
  const seen = new Map<string, number>()
  const upstreams = Array.isArray(config.upstreams) ? config.upstreams as unknown[] : []
  upstreams.forEach((u, i) => {
    const address = str(u, 'address')
    if (address === undefined) return
    checkPort(address, `/upstreams/${i}/address`)
    if (parseHostPort(address).port === 0) errors.push(`/upstreams/${i}/address: upstream port must not be 0`)
    const prev = seen.get(address)
    if (prev !== undefined) errors.push(`/upstreams/${i}/address: duplicate of /upstreams/${prev}/address`)
    seen.set(address, i)
  })
  const admin = config.admin
  const adminListen = str(admin, 'listen')
  if (adminListen !== undefined) {
    checkPort(adminListen, '/admin/listen')
    const { host } = parseHostPort(adminListen)
    const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1'
    if (!loopback && str(admin, 'token') === undefined) {
      errors.push('/admin/listen: a non-loopback admin listener needs /admin/token')
    }
    if (parseHostPort(adminListen).port !== 0 && listeners.some((l) => l.address === adminListen)) errors.push('/admin/listen: must differ from /listen')
  }
  const hk = isObject(config.balancing) ? config.balancing.hashKey : undefined
  const hkSource = str(hk, 'source')
  if (hkSource !== undefined && hkSource !== 'ip' && str(hk, 'name') === undefined) {
    errors.push(`/balancing/hashKey/name: required when source is "${hkSource}"`)
  }
  const tableSize = num(config.rateLimit, 'tableSize')
  if (tableSize !== undefined && Number.isInteger(tableSize) && (tableSize & (tableSize - 1)) !== 0) {
    errors.push('/rateLimit/tableSize: must be a power of two')
  }
  try {
    errors.push(...routingConfigErrors(config as unknown as Config))
  } catch {
    // pools or routes of the wrong shape: the schema pass reported them
  }
  const maxBytes = num(config.cache, 'maxBytes')
  // one shared arena, indexed by 32-bit offsets: more than that is never used, and it says so
  if (maxBytes !== undefined && maxBytes > MAX_ARENA_BYTES) warnings.push(`/cache/maxBytes: ${maxBytes} is over the ${MAX_ARENA_BYTES} bytes one cache can use; ${MAX_ARENA_BYTES} are used`)
  const maxEntryBytes = num(config.cache, 'maxEntryBytes')
  if (maxBytes !== undefined && maxEntryBytes !== undefined && maxEntryBytes > cacheEntryLimit(maxBytes)) {
    const limit = cacheEntryLimit(maxBytes)
    // set by hand: an error; left to its default: the store uses the limit, and says so
    if (isObject(raw) && isObject(raw.cache) && raw.cache.maxEntryBytes !== undefined) {
      errors.push(`/cache/maxEntryBytes: ${maxEntryBytes} is over half of /cache/maxBytes (at most ${limit})`)
    } else {
      warnings.push(`/cache/maxEntryBytes: the default ${maxEntryBytes} is over half of /cache/maxBytes; responses over ${limit} bytes are not cached (set maxEntryBytes to say so)`)
    }
  }
  // the ID's field is added to requests and responses: never one the proxy frames, routes or rewrites itself
  const idHeader = str(config.requestId, 'header')
  if (idHeader !== undefined) {
    const lower = idHeader.toLowerCase()
    if (classifyName(lower) !== H_OTHER || lower === 'traceparent' || lower === 'tracestate') {
      errors.push(`/requestId/header: ${idHeader} is a field the proxy reads or writes itself; choose another (e.g. x-request-id)`)
    }
  }
  errors.push(...resilienceConfigErrors(config))
  const firewall = config.firewall
  if (isObject(firewall) && Array.isArray(firewall.rules)) {
    try {
      errors.push(...firewallConfigErrors(firewall as unknown as FirewallConfig))
    } catch {
      // a rule of the wrong shape: the schema pass reported it
    }
  }
  return errors
}

/** Keys whose value is a file switchyard reads at start, and what each holds (for the message). */
const READ_FILES: Record<string, string> = {
  certFile: 'the certificate',
  keyFile: 'the private key',
  caFile: 'the CA certificates',
  crlFile: 'the certificate revocation list',
  dhparamFile: 'the DH parameters',
  pfxFile: 'the PKCS#12 bundle',
}

/**
 * Files the configuration names that must be readable before anything binds
 * (`--check` and start-up report them with the rest, each with its JSON
 * path): every `certFile`, `keyFile`, `caFile`... wherever a section (TLS
 * listeners, upstream TLS) puts them, so a new section needs no change here.
 */
export function fileErrors (config: Config): string[] {
  const errors: string[] = []
  const walk = (node: unknown, path: string): void => {
    if (Array.isArray(node)) { node.forEach((item, i) => walk(item, `${path}/${i}`)); return }
    if (!isObject(node)) return
    for (const [key, value] of Object.entries(node)) {
      const at = `${path}/${key}`
      const what = Object.hasOwn(READ_FILES, key) ? READ_FILES[key] : undefined
      if (typeof value === 'string' && what !== undefined) {
        // FILE: cannot read WHAT (CODE): the words TLS's loader uses (src/tls), so both report a file alike
        try {
          accessSync(value, constants.R_OK)
          if (!statSync(value).isFile()) errors.push(`${at}: ${value}: not a file (${what})`)
        } catch (err) {
          const e = err as NodeJS.ErrnoException
          errors.push(`${at}: ${value}: cannot read ${what} (${e.code ?? e.message})`)
        }
      } else {
        walk(value, at)
      }
    }
  }
  walk(config, '')
  return errors
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
  }
  return value
}

/**
 * Validate a plain object (already merged with CLI overrides). Throws one
 * ConfigError with every problem: schema and semantic errors together.
 * Warnings (a default that does not fit and was adjusted) go into `warnings`.
 */
export function resolveConfig (raw: unknown, source = 'configuration', warnings: string[] = []): Config {
  const copy = structuredClone(raw) as Record<string, unknown>
  const errors = validate(copy) ? [] : (validate.errors ?? []).map(formatAjvError)
  // the one default JSON Schema cannot hold: it depends on the machine
  // (one per core, up to the schema's maximum: there are 64 worker slots in shared memory)
  if (isObject(copy) && copy.workers === undefined) copy.workers = Math.min(availableParallelism(), (configSchema.properties.workers as { maximum: number }).maximum)
  // a semantic error at a path the schema already faulted says the same thing twice
  const faulted = errors.map((e) => e.slice(0, e.indexOf(': ')))
  for (const e of semanticErrors(copy, raw, warnings)) {
    const path = e.slice(0, e.indexOf(': '))
    if (!faulted.some((f) => f === path || (f !== '/' && path.startsWith(f + '/')))) errors.push(e)
  }
  if (errors.length > 0) throw new ConfigError(errors, source)
  return deepFreeze(copy as unknown as Config)
}

/** `line:column` (1-based) of a character offset in `text`. */
function lineColumn (text: string, offset: number): string {
  let line = 1
  let lineStart = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) { line++; lineStart = i + 1 }
  return `${line}:${offset - lineStart + 1}`
}

/** A JSON syntax error as `PATH:LINE:COLUMN: not valid JSON: ...` (where our scan of the text finds it). */
function syntaxError (path: string, text: string, err: Error): string {
  const found = findJsonSyntaxError(text)
  if (found === null) return `${path}: not valid JSON: ${err.message}`
  return `${path}:${lineColumn(text, found.offset)}: not valid JSON: ${found.message}`
}

export function readConfigFile (path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new ConfigError([e.code === 'ENOENT' ? `${path}: no such file` : `cannot read ${path}: ${e.message}`], path)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError([syntaxError(path, text, err as Error)], path)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(['/: the top level must be a JSON object'], path)
  }
  // JSON.parse keeps the last of two equal keys: two pools of one name would silently become one
  const duplicates = duplicateKeysIn(text, 'pools')
  if (duplicates.length > 0) throw new ConfigError(duplicates.map((name) => `/pools/${name}: duplicate pool name "${name}"`), path)
  return parsed as Record<string, unknown>
}

export function loadConfigFile (path: string): Config {
  return resolveConfig(readConfigFile(path), path)
}
