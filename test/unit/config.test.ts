/**
 * Config: the schema is the one source of every default and of the shape.
 * - the hand-written `Config` type has exactly the schema's key paths, with the
 *   same ones always present (checked by the compiler, below) and values the
 *   schema accepts (a complete sample passes both the compiler and ajv);
 * - every schema default lands in a loaded config, and the README lb.json table
 *   states the same defaults and documents every key;
 * - the README "Command line" block is the --help text, and balancebeam's flags
 *   and the shipped lb.json keep working.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configSchema } from '../../src/config/schema'
import { schemaDefault, schemaNode, type SchemaNode } from '../../src/config/defaults'
import { loadConfigFile, resolveConfig } from '../../src/config/load'
import type { Config } from '../../src/config/types'
import { BIND_WITHOUT_FILE, baseWithoutFile, mergeOverrides, parseArgs, usage } from '../../src/cli-args'
import { ConfigError } from '../../src/errors'

const ROOT = join(__dirname, '..', '..', '..')
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

// ---- the type against the schema, at compile time ---------------------------
// Key paths as the README writes them (`upstreams[].weight`), suffixed with `?`
// when the key may be absent from a loaded config. A mismatch fails the build
// with the offending path in the message.

type Leaf = string | number | boolean

type TypePaths<T, P extends string = ''> = {
  [K in keyof T & string]-?: (undefined extends T[K] ? `${P}${K}?` : `${P}${K}`) | TypeSubPaths<NonNullable<T[K]>, `${P}${K}`>
}[keyof T & string]
type TypeSubPaths<V, P extends string> = V extends ReadonlyArray<infer U>
  ? (U extends Leaf ? never : TypePaths<U, `${P}[].`>)
  : V extends Leaf ? never : TypePaths<V, `${P}.`>

/** Present after loading: the schema has a default for it, or its object requires it. */
type AlwaysPresent<S, K, N> = N extends { readonly default: unknown }
  ? true
  : S extends { readonly required: ReadonlyArray<infer R> } ? (K extends R ? true : false) : false
type SchemaPaths<S, P extends string = ''> = S extends { readonly properties: infer Props }
  ? {
      [K in keyof Props & string]: (AlwaysPresent<S, K, Props[K]> extends true ? `${P}${K}` : `${P}${K}?`) | SchemaSubPaths<Props[K], `${P}${K}`>
    }[keyof Props & string]
  : never
// `items` marks an array, also when the node allows another type too (`listen`: a string or an array)
type SchemaSubPaths<N, P extends string> = N extends { readonly items: infer I }
  ? SchemaPaths<I, `${P}[].`>
  : SchemaPaths<N, `${P}.`>

/** The one default load.ts fills in itself (it depends on the machine). */
type FilledByLoad = 'workers'
/**
 * Objects keyed by the user's names (pool names, header names): the schema
 * describes their values with additionalProperties, and the README documents
 * them in the row of the object itself.
 */
type NamedKeys = `pools.${string}` | `routes[].match.headers.${string}` | `routes[].${'requestHeaders' | 'responseHeaders'}.${'set' | 'add'}.${string}`
const NAMED_KEYS = ['pools', 'routes[].match.headers', 'routes[].requestHeaders.set', 'routes[].requestHeaders.add', 'routes[].responseHeaders.set', 'routes[].responseHeaders.add']
type FromSchema = Exclude<SchemaPaths<typeof configSchema>, `${FilledByLoad}?`> | FilledByLoad
type FromType = Exclude<TypePaths<Config>, NamedKeys>
type InSchemaNotInType = Exclude<FromSchema, FromType>
type InTypeNotInSchema = Exclude<FromType, FromSchema>
// `true` only when the two sets are equal; otherwise the type is the stray paths and `true` does not fit
const schemaPathsInType: [InSchemaNotInType] extends [never] ? true : InSchemaNotInType = true
const typePathsInSchema: [InTypeNotInSchema] extends [never] ? true : InTypeNotInSchema = true

// ---- helpers ------------------------------------------------------------------

/** Every key made required, all the way down: a sample of this type names every key of Config. */
type Complete<T> = T extends ReadonlyArray<infer U>
  ? Array<Complete<U>>
  : T extends object ? { [K in keyof T]-?: Complete<NonNullable<T[K]>> } : T

interface SchemaEntry { path: string, node: SchemaNode, parent: SchemaNode, key: string }

/** Every property in the schema, depth first, with README-style paths. */
function schemaEntries (node: SchemaNode = configSchema as unknown as SchemaNode, prefix = '', out: SchemaEntry[] = []): SchemaEntry[] {
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const path = prefix + key
    out.push({ path, node: child, parent: node, key })
    if (child.items?.properties !== undefined) schemaEntries(child.items, `${path}[].`, out)
    else if (child.properties !== undefined) schemaEntries(child, `${path}.`, out)
  }
  return out
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Key paths present in a value, in the same notation. */
function valuePaths (value: Record<string, unknown>, prefix = '', out = new Set<string>()): Set<string> {
  for (const [key, child] of Object.entries(value)) {
    const path = prefix + key
    out.add(path)
    if (NAMED_KEYS.includes(path)) continue
    if (Array.isArray(child)) { for (const item of child) if (isObject(item)) valuePaths(item, `${path}[].`, out) } else if (isObject(child)) valuePaths(child, `${path}.`, out)
  }
  return out
}

/** The values at a path (several under `[]`); missing steps give `undefined`. */
function valuesAt (root: unknown, path: string): unknown[] {
  let current: unknown[] = [root]
  for (const part of path.split('.')) {
    const isArray = part.endsWith('[]')
    const key = isArray ? part.slice(0, -2) : part
    current = current.map((v) => (isObject(v) ? v[key] : undefined))
    if (isArray) current = current.flatMap((v) => (Array.isArray(v) ? v : [undefined]))
  }
  return current
}

function section (markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`)
  assert.ok(start !== -1, `README has no "## ${title}" section`)
  const end = markdown.indexOf('\n## ', start + 1)
  return markdown.slice(start, end === -1 ? undefined : end)
}

interface ReadmeRow { key: string, defaultCell: string, meaning: string }

function readmeRows (): ReadmeRow[] {
  return section(readme, 'lb.json reference').split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => {
      const cells = line.slice(2, -2).split(' | ')
      return { key: cells[0].replace(/`/g, ''), defaultCell: cells[1], meaning: cells.slice(2).join(' | ') }
    })
}

/** A README default cell as a value: `1`, `16,384`, `` `round-robin` ``, `` `[200]` ``, `` `false` ``. */
function cellValue (cell: string): unknown {
  const text = cell.replace(/^`|`$/g, '')
  if (/^-?[0-9][0-9,]*$/.test(text)) return Number(text.replace(/,/g, ''))
  try { return JSON.parse(text) } catch { return text }
}

/** The row documenting a path: its own, else the nearest ancestor's (`firewall.rules[]` covers its rules' keys). */
function documentingRow (rows: ReadmeRow[], path: string): ReadmeRow | undefined {
  const parts = path.split('.')
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join('.')
    const row = rows.find((r) => r.key === candidate || (candidate.endsWith('[]') && r.key === candidate.slice(0, -2)))
    if (row !== undefined) return row
  }
  return undefined
}

const MINIMAL = { listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:8001' }] }

/** Every optional section present with only what it requires, so all nested defaults apply. */
const EVERY_SECTION = {
  ...MINIMAL,
  listen: [{ address: '127.0.0.1:0', tls: { acme: { directoryUrl: 'https://acme.test/dir', email: 'ops@example.com', domains: ['example.com'], storageDir: 'acme' } } }],
  upstreams: [{ address: '127.0.0.1:8001', tls: {} }],
  healthCheck: { active: {} },
  rateLimit: { maxRequests: 5 },
  stickySessions: { cookie: 'swy' },
  cache: { maxBytes: 1 << 20 },
  firewall: { rules: [{ action: 'log', path: {}, header: { name: 'x-a' } }] },
  admin: { listen: '127.0.0.1:0' },
  queue: {},
  tracing: { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces' },
  cluster: { redis: { tls: {} } },
}

/** Every key set (none to a default), so its paths are all of Config's. */
const COMPLETE: Complete<Config> = {
  $schema: 'https://switchyard.dev/lb.schema.json',
  listen: [{
    address: '127.0.0.1:0',
    tls: {
      certificates: [{ certFile: 'a.pem', keyFile: 'a.key' }],
      acme: { directoryUrl: 'https://acme.test/dir', email: 'ops@example.com', domains: ['example.com'], storageDir: '/var/lib/switchyard', caFile: 'acme-ca.pem', renewBeforeDays: 20 },
      minVersion: 'TLSv1.3',
      ciphers: 'HIGH',
      alpn: ['http/1.1'],
    },
    proxyProtocol: { trustedCidrs: ['127.0.0.1/32'] },
    httpsRedirect: false,
  }],
  workers: 0,
  workerMaxYoungGenerationSizeMb: 24,
  memoryReleaseIntervalMs: 5000,
  upstreams: [{ address: '127.0.0.1:8001', weight: 2, tls: { serverName: 'backend.test', caFile: 'ca.pem', verify: false }, proxyProtocol: 'v2', backup: false, maxConnections: 3, slowStartMs: 4 }],
  balancing: { algorithm: 'consistent-hash', hashKey: { source: 'header', name: 'x-user' } },
  retries: 2,
  retryOn: ['reset', 'retriable-status'],
  retriableStatuses: [503],
  retryIdempotencyKey: true,
  retryBodyMaxBytes: 10,
  retryBudgetPercent: 30,
  queue: { maxSize: 5, timeoutMs: 6 },
  timeouts: { connectMs: 1, responseMs: 2, upstreamIdleMs: 3, clientHeaderMs: 4, clientIdleMs: 5, tunnelIdleMs: 19, drainMs: 6 },
  limits: { maxHeaderBytes: 2048, maxHeaderCount: 10, maxRequestTargetBytes: 512, maxBodyBytes: 1, maxConnections: 20, maxConnectionsPerClient: 4 },
  pool: { maxIdlePerUpstream: 1, idleTimeoutMs: 7 },
  healthCheck: {
    panicThresholdPercent: 40,
    slowStartMs: 1000,
    active: { path: '/health', intervalMs: 8, timeoutMs: 9, expectStatus: [204, '2xx'], healthyThreshold: 2, unhealthyThreshold: 3 },
    passive: { maxFailures: 4, cooldownMs: 10, honorRetryAfter: false, maxRetryAfterMs: 5000 },
  },
  rateLimit: { algorithm: 'token-bucket', maxRequests: 5, windowMs: 11, burst: 6, tableSize: 64, trustProxy: ['10.0.0.0/8'] },
  stickySessions: { cookie: 'swy', secret: '0123456789abcdef', maxAgeSeconds: 60 },
  cache: { maxBytes: 4096, maxEntryBytes: 1024, cacheAuthorized: true, targetedField: 'Switchyard-Cache-Control', staleIfErrorMs: 12 },
  firewall: {
    builtin: true,
    rules: [{
      name: 'r',
      action: 'deny',
      methods: ['POST'],
      path: { prefix: '/a', exact: '/b', regex: '^/c' },
      header: { name: 'x-a', present: true, equals: 'v', regex: 'v' },
      clientCidr: ['192.0.2.0/24'],
      maxBodyBytes: 10,
    }],
  },
  cluster: {
    redis: { url: 'redis://10.0.0.1:6380/1', keyPrefix: 'lb:', timeoutMs: 50, tls: { caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem', servername: 'redis', rejectUnauthorized: false } },
    instanceId: 'edge-1',
    heartbeatMs: 500,
    rateLimit: { scope: 'local', onRedisFailure: 'closed' },
    health: { share: false, probeReplicas: 3 },
  },
  admin: { listen: '127.0.0.1:9', token: 'an-admin-token' },
  log: { level: 'silent', access: false, redactQuery: true, accessFile: '/tmp/access.log' },
  requestId: { enabled: false, header: 'x-trace-me' },
  tracing: { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces', sampleRatio: 0.5, serviceName: 'edge' },
  proxy: { via: 'edge', allowedUpgrades: ['websocket', 'foo/1'], statusDetails: true },
  pools: {
    api: {
      upstreams: [{ address: '127.0.0.1:8002', weight: 3, tls: { serverName: 'api.test', caFile: 'ca.pem', verify: true }, proxyProtocol: 'v1', backup: false, maxConnections: 2, slowStartMs: 5 }],
      balancing: { algorithm: 'least-connections', hashKey: { source: 'cookie', name: 'sid' } },
      queue: { maxSize: 7, timeoutMs: 8 },
      healthCheck: {
        panicThresholdPercent: 0,
        slowStartMs: 9,
        active: { path: '/up', intervalMs: 12, timeoutMs: 13, expectStatus: ['2xx'], healthyThreshold: 1, unhealthyThreshold: 2 },
        passive: { maxFailures: 2, cooldownMs: 14, honorRetryAfter: true, maxRetryAfterMs: 1000 },
      },
    },
  },
  routes: [{
    name: 'all',
    match: { host: ['api.example.com', '*.example.org'], pathPrefix: '/api', path: '/api/x', pathRegex: '^/api/', methods: ['GET'], headers: { 'x-a': 'v', 'x-b': { regex: '^v' }, 'x-c': { present: false } } },
    pool: 'api',
    stripPathPrefix: true,
    rewritePath: { regex: '^/v1/(.*)$', replace: '/$1' },
    setHost: 'internal.api',
    requestHeaders: { set: { 'x-client': '{client_ip}' }, add: { 'x-via-route': 'all' }, remove: ['cookie'] },
    responseHeaders: { set: { 'x-frame-options': 'DENY' }, add: { 'x-route': 'all' }, remove: ['server'] },
    redirect: { location: 'https://{host}{path}{query}', status: 308 },
    respond: { status: 403, body: 'no', contentType: 'text/plain' },
    rateLimit: { algorithm: 'sliding-window', maxRequests: 3, windowMs: 15, burst: 4 },
    cache: false,
    timeouts: { responseMs: 16, upstreamIdleMs: 17, tunnelIdleMs: 20 },
    retries: 0,
    maxBodyBytes: 18,
    firewall: false,
  }],
}

/** COMPLETE as a loadable file: a route takes one of pool, redirect, respond, so its route is three. */
const COMPLETE_LOADABLE = {
  ...COMPLETE,
  routes: [
    { ...COMPLETE.routes[0], redirect: undefined, respond: undefined },
    { ...COMPLETE.routes[0], name: 'moved', pool: undefined, respond: undefined },
    { ...COMPLETE.routes[0], name: 'denied', pool: undefined, redirect: undefined },
  ].map((r) => JSON.parse(JSON.stringify(r)) as typeof r),
}

// ---- tests ------------------------------------------------------------------------

describe('config: the Config type against the schema', () => {
  test('same key paths and the same always-present keys (compile-time check above)', () => {
    assert.equal(schemaPathsInType, true)
    assert.equal(typePathsInSchema, true)
  })

  test('a complete Config names every schema key and nothing else', () => {
    const fromSchema = new Set(schemaEntries().map((e) => e.path))
    const fromSample = valuePaths(COMPLETE)
    assert.deepEqual([...fromSample].filter((p) => !fromSchema.has(p)), [], 'in Config, not in the schema')
    assert.deepEqual([...fromSchema].filter((p) => !fromSample.has(p)), [], 'in the schema, not in Config')
  })

  test('the complete Config is valid, and loading it changes nothing', () => {
    assert.deepEqual(resolveConfig(COMPLETE_LOADABLE), COMPLETE_LOADABLE)
  })
})

describe('config: defaults come from the schema', () => {
  test('every schema default is applied when its section is present', () => {
    // the second input leaves firewall.rules to its default
    for (const raw of [EVERY_SECTION, { ...EVERY_SECTION, firewall: {} }]) {
      const config = resolveConfig(raw)
      const given = valuePaths(raw)
      for (const { path, node } of schemaEntries()) {
        if (!('default' in node) || given.has(path)) continue
        for (const value of valuesAt(config, path)) {
          if (node.properties !== undefined) assert.ok(isObject(value), `${path}: the section is filled in`)
          else assert.deepEqual(value, node.default, path)
        }
      }
    }
  })

  test('passive health: default maxFailures 5, and present without a healthCheck section', () => {
    // 5, not 1: one client's slow or broken requests must not eject a healthy upstream
    assert.equal(schemaDefault('healthCheck.passive.maxFailures'), 5)
    const expected = {
      maxFailures: schemaDefault('healthCheck.passive.maxFailures'),
      cooldownMs: schemaDefault('healthCheck.passive.cooldownMs'),
      honorRetryAfter: schemaDefault('healthCheck.passive.honorRetryAfter'),
      maxRetryAfterMs: schemaDefault('healthCheck.passive.maxRetryAfterMs'),
    }
    const bare = resolveConfig(MINIMAL)
    assert.deepEqual(bare.healthCheck, {
      panicThresholdPercent: schemaDefault('healthCheck.panicThresholdPercent'),
      slowStartMs: schemaDefault('healthCheck.slowStartMs'),
      passive: expected,
    }, 'no section: passive on, active off')
    assert.deepEqual(resolveConfig({ ...MINIMAL, healthCheck: { active: { path: '/h' } } }).healthCheck.passive, expected)
    assert.deepEqual(resolveConfig({ ...MINIMAL, healthCheck: { passive: { maxFailures: 1 } } }).healthCheck.passive, { ...expected, maxFailures: 1 })
  })

  test('optional sections stay absent, and the loaded config is frozen', () => {
    const config = resolveConfig(MINIMAL)
    for (const key of ['rateLimit', 'stickySessions', 'cache', 'firewall', 'admin', 'tracing'] as const) assert.equal(config[key], undefined, key)
    assert.equal(config.healthCheck.active, undefined)
    assert.ok(Object.isFrozen(config.healthCheck.passive))
  })

  test('schemaDefault reads nested and array-item defaults and refuses unknown paths', () => {
    assert.equal(schemaDefault('upstreams[].weight'), 1)
    assert.deepEqual(schemaDefault('proxy.allowedUpgrades'), ['websocket'])
    assert.equal(schemaNode('firewall.rules[]').type, 'object')
    assert.throws(() => schemaDefault('healthCheck.passive.maxFailure'), /no healthCheck\.passive\.maxFailure/)
    assert.throws(() => schemaDefault('listen'), /no default/)
    const copy = schemaDefault('healthCheck.active.expectStatus') as number[]
    copy.push(500)
    assert.deepEqual(schemaDefault('healthCheck.active.expectStatus'), [200], 'a copy, not the schema itself')
  })

  test('an unknown key in a defaulted section is still an error, with its path', () => {
    assert.throws(() => resolveConfig({ ...MINIMAL, healthCheck: { passive: { maxFailure: 5 } } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.errors, ['/healthCheck/passive: unknown key "maxFailure"'])
      return true
    })
  })
})

describe('config: the README lb.json reference', () => {
  const rows = readmeRows()

  test('every row names a schema key, once', () => {
    assert.ok(rows.length > 40, `only ${rows.length} rows parsed`)
    for (const { key } of rows) assert.doesNotThrow(() => schemaNode(key), `README row ${key} is not in the schema`)
    assert.equal(new Set(rows.map((r) => r.key)).size, rows.length, 'duplicate rows')
  })

  test('every default in the table is the schema default', () => {
    for (const { key, defaultCell } of rows) {
      const node = schemaNode(key.endsWith('[]') ? key.slice(0, -2) : key)
      if ('default' in node && node.properties === undefined) {
        assert.deepEqual(cellValue(defaultCell), node.default, `README default of ${key}`)
      }
    }
  })

  test('a row that says "required" is required by the schema', () => {
    const entries = new Map(schemaEntries().map((e) => [e.path, e]))
    for (const { key, defaultCell } of rows) {
      if (!defaultCell.startsWith('required')) continue
      const entry = entries.get(key)
      assert.ok(entry?.parent.required?.includes(entry.key) === true, `${key} is not required in the schema`)
    }
  })

  test('every schema key is documented, with every value of an enum', () => {
    for (const { path, node } of schemaEntries()) {
      // a section is documented through its keys
      if (node.properties !== undefined || node.items?.properties !== undefined) continue
      const row = documentingRow(rows, path)
      assert.ok(row !== undefined, `${path} is not in the README lb.json table`)
      const values = (node as { enum?: readonly string[] }).enum
      for (const value of values ?? []) assert.ok(row.meaning.includes(`\`${value}\``), `README row ${row.key} does not list \`${value}\` (${path})`)
    }
  })

  test('passive health row states the ejection rule', () => {
    const row = rows.find((r) => r.key === 'healthCheck.passive.maxFailures')
    assert.ok(row !== undefined)
    assert.match(row.meaning, /failure after the request was sent counts only when the upstream has sent no response head since that request was sent/)
    assert.match(row.meaning, /consecutive ones from the same client count once/)
  })
})

describe('config: command line', () => {
  const empty = mkdtempSync(join(tmpdir(), 'swy-config-'))
  const load = (argv: string[], cwd = empty): Config => {
    const options = parseArgs(argv, cwd)
    const base = options.configPath !== null ? JSON.parse(readFileSync(options.configPath, 'utf8')) as Record<string, unknown> : baseWithoutFile()
    return resolveConfig(mergeOverrides(base, options.overrides))
  }

  test('the README "Command line" block is the --help option list', () => {
    const block = /```\n([\s\S]*?)```/.exec(section(readme, 'Command line'))
    assert.ok(block !== null)
    const lines = usage.split('\n')
    const from = lines.indexOf('Options:') + 1
    const options = lines.slice(from, lines.indexOf('', from))
    assert.deepEqual(block[1].trimEnd().split('\n'), ['switchyard [options]', ...options])
    assert.ok(usage.includes(`(default ${String(schemaDefault('healthCheck.active.path'))})`), 'the --help default path is the schema one')
  })

  test('balancebeam flags, without a file', () => {
    const config = load(['--upstream', '127.0.0.1:8001', '-u', '127.0.0.1:8002', '--active-health-check-interval', '3', '--active-health-check-path=/health', '--max-requests-per-minute', '10'])
    assert.equal(config.listen, BIND_WITHOUT_FILE)
    assert.deepEqual(config.upstreams, [{ address: '127.0.0.1:8001', weight: 1 }, { address: '127.0.0.1:8002', weight: 1 }])
    assert.deepEqual(config.healthCheck.active, {
      path: '/health',
      intervalMs: 3000,
      timeoutMs: schemaDefault('healthCheck.active.timeoutMs'),
      expectStatus: schemaDefault('healthCheck.active.expectStatus'),
      healthyThreshold: schemaDefault('healthCheck.active.healthyThreshold'),
      unhealthyThreshold: schemaDefault('healthCheck.active.unhealthyThreshold'),
    })
    assert.equal(config.healthCheck.passive.maxFailures, schemaDefault('healthCheck.passive.maxFailures'))
    assert.equal(config.rateLimit?.algorithm, 'fixed-window')
    assert.equal(config.rateLimit?.maxRequests, 10)
    assert.equal(config.rateLimit?.windowMs, 60_000)
    assert.equal(load(['--bind', '127.0.0.1:1200', '-u', '127.0.0.1:8001']).listen, '127.0.0.1:1200')
    assert.equal(load(['-u', '127.0.0.1:8001', '--active-health-check-interval', '3']).healthCheck.active?.path, schemaDefault('healthCheck.active.path'))
  })

  test('flags over a file: --max-requests-per-minute 0 turns its rate limit off', () => {
    const dir = mkdtempSync(join(tmpdir(), 'swy-config-'))
    try {
      writeFileSync(join(dir, 'lb.json'), JSON.stringify({ ...MINIMAL, rateLimit: { maxRequests: 5 } }))
      assert.equal(load([], dir).rateLimit?.maxRequests, 5)
      assert.equal(load(['--max-requests-per-minute', '0'], dir).rateLimit, undefined)
      assert.equal(load(['--bind', '127.0.0.1:1300'], dir).listen, '127.0.0.1:1300')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('the shipped lb.json loads unchanged, its explicit values kept', () => {
    const config = loadConfigFile(join(ROOT, 'lb.json'))
    assert.equal(config.listen, '127.0.0.1:8888')
    assert.deepEqual(config.healthCheck.passive, { maxFailures: 3, cooldownMs: 10_000, honorRetryAfter: true, maxRetryAfterMs: 60_000 })
    assert.equal(config.healthCheck.active?.intervalMs, 5000)
    assert.equal(config.admin?.listen, '127.0.0.1:9090')
  })

  test('cleanup', () => { rmSync(empty, { recursive: true, force: true }) })
})
