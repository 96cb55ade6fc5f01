/**
 * Config errors as an operator meets them: one pass reports every problem
 * (schema and semantic together), a JSON syntax error names file, line and
 * column, a bad flag value names the flag, and a cache entry limit over half
 * the cache is an error when set by hand and a warning when it is the default
 * (never silently clamped).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readConfigFile, resolveConfig, cacheEntryLimit, fileErrors } from '../../src/config/load'
import { parseArgs, CliError } from '../../src/cli-args'
import { ConfigError } from '../../src/errors'

const MINIMAL = { listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:8001' }] }

function errorsOf (raw: unknown): readonly string[] {
  try {
    resolveConfig(raw)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.errors
  }
  assert.fail('the configuration was accepted')
}

describe('config errors: one pass', () => {
  test('schema and semantic errors come together', () => {
    const errors = errorsOf({
      ...MINIMAL,
      upstreams: [{ address: '127.0.0.1:8001' }, { address: '127.0.0.1:8001' }],
      rateLimit: { maxRequests: 5, tableSize: 1000 },
      timeouts: { connectMs: -1 },
      bogus: 1,
    })
    assert.ok(errors.includes('/rateLimit/tableSize: must be a power of two'), errors.join('\n'))
    assert.ok(errors.includes('/upstreams/1/address: duplicate of /upstreams/0/address'), errors.join('\n'))
    assert.ok(errors.some((e) => e.startsWith('/timeouts/connectMs: ')), errors.join('\n'))
    assert.ok(errors.includes('/: unknown key "bogus"'), errors.join('\n'))
  })

  test('a semantic check skips what the schema already faulted, and survives wrong shapes', () => {
    const errors = errorsOf({ listen: 'nope', upstreams: 'none', balancing: { hashKey: { source: 'header' } }, firewall: { rules: [{ action: 'deny', path: { regex: '(' } }, 7] } })
    assert.ok(errors.some((e) => e.startsWith('/listen: expected HOST:PORT')), errors.join('\n'))
    assert.ok(errors.some((e) => e.startsWith('/upstreams: ')), errors.join('\n'))
    assert.ok(errors.includes('/balancing/hashKey/name: required when source is "header"'), errors.join('\n'))
    assert.equal(errors.filter((e) => e.startsWith('/listen')).length, 1, errors.join('\n'))
    assert.deepEqual(errorsOf(null), ['/: must be object'])
  })

  test('the request-ID field cannot be one the proxy frames, routes or rewrites', () => {
    for (const header of ['Content-Length', 'host', 'transfer-encoding', 'via', 'x-forwarded-for', 'cookie', 'traceparent']) {
      assert.deepEqual(errorsOf({ ...MINIMAL, requestId: { header } }), [`/requestId/header: ${header} is a field the proxy reads or writes itself; choose another (e.g. x-request-id)`])
    }
    assert.equal(resolveConfig({ ...MINIMAL, requestId: { header: 'X-Correlation-Id' } }).requestId.header, 'X-Correlation-Id')
  })

  test('cache.maxEntryBytes over half of maxBytes: an error when given, a warning when defaulted', () => {
    assert.equal(cacheEntryLimit(4096), 2048)
    const errors = errorsOf({ ...MINIMAL, cache: { maxBytes: 4096, maxEntryBytes: 4000 } })
    assert.deepEqual(errors, ['/cache/maxEntryBytes: 4000 is over half of /cache/maxBytes (at most 2048)'])
    const warnings: string[] = []
    const config = resolveConfig({ ...MINIMAL, cache: { maxBytes: 65_536 } }, 'test', warnings)
    assert.equal(config.cache?.maxEntryBytes, 1_048_576)
    assert.equal(warnings.length, 1)
    assert.match(warnings[0], /^\/cache\/maxEntryBytes: the default 1048576 is over half of \/cache\/maxBytes; responses over 32768 bytes are not cached/)
    const none: string[] = []
    resolveConfig({ ...MINIMAL, cache: { maxBytes: 4 << 20 } }, 'test', none)
    assert.deepEqual(none, [])
  })

  test('cache.maxBytes over what one arena can use: a warning, and that is what is used', () => {
    const warnings: string[] = []
    resolveConfig({ ...MINIMAL, cache: { maxBytes: 3 * 2 ** 30 } }, 'test', warnings)
    assert.deepEqual(warnings, ['/cache/maxBytes: 3221225472 is over the 2147483640 bytes one cache can use; 2147483640 are used'])
    const none: string[] = []
    resolveConfig({ ...MINIMAL, cache: { maxBytes: 2147483640 } }, 'test', none)
    assert.deepEqual(none, [])
  })
})

describe('config errors: the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'swy-config-errors-'))
  const write = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p }

  test('invalid JSON names the file, line and column', () => {
    const file = write('bad.json', '{\n  "listen": "127.0.0.1:0",\n  "upstreams" []\n}\n')
    assert.throws(() => readConfigFile(file), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.errors.length, 1)
      assert.equal(err.errors[0], `${file}:3:15: not valid JSON: unexpected "[", expected ":"`)
      return true
    })
    const cut = write('cut.json', '{\n  "listen": ')
    assert.throws(() => readConfigFile(cut), (err: unknown) => err instanceof ConfigError && /cut\.json:2:13: not valid JSON: unexpected end of input, expected a value$/.test(err.errors[0]))
    assert.throws(() => readConfigFile(join(dir, 'absent.json')), (err: unknown) => err instanceof ConfigError && /absent\.json: no such file/.test(err.errors[0]))
  })

  test('cleanup', () => { rmSync(dir, { recursive: true, force: true }) })
})

describe('config errors: flags', () => {
  const bad = (argv: string[], flag: RegExp): void => {
    assert.throws(() => parseArgs(argv, tmpdir()), (err: unknown) => {
      assert.ok(err instanceof CliError, String(err))
      assert.match(err.message, flag)
      assert.doesNotMatch(err.message, /^\//, 'names the flag, not a JSON path')
      return true
    })
  }

  test('a bad value is reported as the flag', () => {
    bad(['--upstream', '127.0.0.1'], /^--upstream "127\.0\.0\.1": expected HOST:PORT/)
    bad(['-u', '127.0.0.1:70000'], /^-u "127\.0\.0\.1:70000": port 70000 is out of range/)
    bad(['--log-level', 'loud'], /^--log-level "loud": must be one of fatal, error, warn, info, debug, trace, silent$/)
    bad(['--algorithm', 'fastest'], /^--algorithm "fastest": must be one of round-robin/)
    bad(['--bind', 'localhost'], /^--bind "localhost": expected HOST:PORT/)
    bad(['--admin', ':x'], /^--admin ":x": expected HOST:PORT/)
    bad(['--workers', '65'], /^--workers 65: must be <= 64$/)
    bad(['--active-health-check-path', 'health'], /^--active-health-check-path "health": expected an absolute path/)
    bad(['--max-requests-per-minute', '99999999'], /^--max-requests-per-minute 99999999: must be <= 16777215$/)
  })

  test('good values pass, --check is a flag', () => {
    const options = parseArgs(['--check', '-u', '127.0.0.1:8001', '--log-level', 'warn', '--algorithm', 'random', '--workers', '2'], tmpdir())
    assert.equal(options.check, true)
    assert.deepEqual(options.overrides.upstreams, [{ address: '127.0.0.1:8001' }])
  })
})

describe('config errors: files the configuration names', () => {
  test('every certFile/keyFile/caFile must be readable, reported with its JSON path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'swy-files-'))
    try {
      const cert = join(dir, 'cert.pem')
      writeFileSync(cert, 'x')
      // the shape of a TLS section does not matter: any such key, at any depth
      const config = { listeners: [{ tls: { certificates: [{ certFile: cert, keyFile: join(dir, 'missing.key') }] } }], upstreamTls: { caFile: dir } }
      assert.deepEqual(fileErrors(config as never), [
        `/listeners/0/tls/certificates/0/keyFile: ${join(dir, 'missing.key')}: cannot read the private key (ENOENT)`,
        `/upstreamTls/caFile: ${dir}: not a file (the CA certificates)`,
      ])
      assert.deepEqual(fileErrors(resolveConfig(MINIMAL)), [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
