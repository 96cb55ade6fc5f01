/**
 * read -> parse -> validate (ajv, defaults applied to a copy) -> semantic checks -> freeze.
 * Every problem is reported with its JSON path; nothing is bound before this passes.
 * Defaults come from the schema alone (ajv `useDefaults`); none is written here
 * except `workers`, which depends on the machine.
 */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import Ajv, { type ErrorObject } from 'ajv'
import { configSchema } from './schema'
import type { Config } from './types'
import { parseHostPort } from './types'
import { ConfigError } from '../errors'
import { firewallConfigErrors } from '../firewall/rules'
import { routingConfigErrors, duplicateKeysIn } from '../routing/check'

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

/** Checks JSON Schema cannot express. */
function semanticErrors (config: Config): string[] {
  const errors: string[] = []
  const checkPort = (value: string, path: string): void => {
    const { port } = parseHostPort(value)
    if (!(port >= 0 && port <= 65535)) errors.push(`${path}: port ${port} is out of range 0-65535`)
  }
  checkPort(config.listen, '/listen')
  const seen = new Map<string, number>()
  config.upstreams?.forEach((u, i) => {
    checkPort(u.address, `/upstreams/${i}/address`)
    if (parseHostPort(u.address).port === 0) errors.push(`/upstreams/${i}/address: upstream port must not be 0`)
    const prev = seen.get(u.address)
    if (prev !== undefined) errors.push(`/upstreams/${i}/address: duplicate of /upstreams/${prev}/address`)
    seen.set(u.address, i)
  })
  if (config.admin !== undefined) {
    checkPort(config.admin.listen, '/admin/listen')
    const { host } = parseHostPort(config.admin.listen)
    const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1'
    if (!loopback && config.admin.token === undefined) {
      errors.push('/admin/listen: a non-loopback admin listener needs /admin/token')
    }
    if (config.admin.listen === config.listen && parseHostPort(config.listen).port !== 0) errors.push('/admin/listen: must differ from /listen')
  }
  const hk = config.balancing.hashKey
  if (hk.source !== 'ip' && hk.name === undefined) {
    errors.push(`/balancing/hashKey/name: required when source is "${hk.source}"`)
  }
  const rl = config.rateLimit
  if (rl !== undefined && (rl.tableSize & (rl.tableSize - 1)) !== 0) {
    errors.push('/rateLimit/tableSize: must be a power of two')
  }
  if (config.firewall !== undefined) errors.push(...firewallConfigErrors(config.firewall))
  errors.push(...routingConfigErrors(config))
  return errors
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
  }
  return value
}

/** Validate a plain object (already merged with CLI overrides). Throws ConfigError. */
export function resolveConfig (raw: unknown, source = 'configuration'): Config {
  const copy = structuredClone(raw) as Record<string, unknown>
  if (!validate(copy)) {
    throw new ConfigError((validate.errors ?? []).map(formatAjvError), source)
  }
  const config = copy as unknown as Config
  // the one default JSON Schema cannot hold: it depends on the machine
  if (config.workers === undefined) config.workers = availableParallelism()
  const errors = semanticErrors(config)
  if (errors.length > 0) throw new ConfigError(errors, source)
  return deepFreeze(config)
}

export function readConfigFile (path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError([`cannot read ${path}: ${(err as Error).message}`], path)
  }
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(['/: the top level must be a JSON object'], path)
    }
    // JSON.parse keeps the last of two equal keys: two pools of one name would silently become one
    const duplicates = duplicateKeysIn(text, 'pools')
    if (duplicates.length > 0) throw new ConfigError(duplicates.map((name) => `/pools/${name}: duplicate pool name "${name}"`), path)
    return parsed as Record<string, unknown>
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError([`/: not valid JSON: ${(err as Error).message}`], path)
  }
}

export function loadConfigFile (path: string): Config {
  return resolveConfig(readConfigFile(path), path)
}
