/**
 * The error catalogue: every code is well-formed, maps to an HTTP status and
 * a log flag, has a message, and is documented in the README.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { errorCatalogue, SwitchyardError, ConfigError, toWire, describe as describeCode, type ErrorCode } from '../../src/errors'
import { errorReply } from '../../src/http/replies'

const readme = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8')

test('every code is SWY_ERR_*, unique, with a status, a flag and a message', () => {
  const codes = Object.keys(errorCatalogue)
  assert.equal(new Set(codes).size, codes.length)
  for (const code of codes) {
    const info = errorCatalogue[code as ErrorCode]
    assert.match(code, /^SWY_ERR_[A-Z0-9_]+$/)
    assert.ok(info.status >= 400 && info.status <= 599, `${code}: status ${info.status}`)
    assert.ok(info.flag.length > 0, `${code}: flag`)
    assert.ok(info.message.length > 0, `${code}: message`)
  }
})

test('every code is documented in the README', () => {
  for (const code of Object.keys(errorCatalogue)) {
    assert.ok(readme.includes(`\`${code}\``), `${code} is missing from README.md`)
  }
})

test('errors carry their code and status, and cross threads as plain data', () => {
  const err = new SwitchyardError('SWY_ERR_UPSTREAM_TIMEOUT')
  assert.equal(err.code, 'SWY_ERR_UPSTREAM_TIMEOUT')
  assert.equal(err.status, 504)
  assert.deepEqual(toWire(err), { code: 'SWY_ERR_UPSTREAM_TIMEOUT', message: describeCode('SWY_ERR_UPSTREAM_TIMEOUT').message })
  const config = new ConfigError(['/listen: expected HOST:PORT'], 'lb.json')
  assert.equal(config.code, 'SWY_ERR_CONFIG_INVALID')
  assert.deepEqual(config.errors, ['/listen: expected HOST:PORT'])
})

test('every canned reply is a well-formed response that leaks nothing', () => {
  for (const code of Object.keys(errorCatalogue) as ErrorCode[]) {
    for (const close of [false, true]) {
      const text = errorReply(code, close).toString('latin1')
      const [head, body] = text.split('\r\n\r\n')
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${errorCatalogue[code].status} `))
      const length = Number(/\r\nContent-Length: (\d+)/.exec(head)?.[1])
      assert.equal(Buffer.byteLength(body), length)
      assert.equal(/\r\nConnection: close/.test(head), close)
      // the catalogue message and nothing else: no addresses, no stack frames
      assert.doesNotMatch(body, /127\.0\.0\.1|\bat \w+ \(|\.js:\d+/)
      assert.ok(body.includes(errorCatalogue[code].message))
    }
  }
})

test('every code is produced somewhere in src/ (no catalogue entry without a producer)', () => {
  const srcDir = join(__dirname, '..', '..', '..', 'src')
  let text = ''
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else if (name.endsWith('.ts') && name !== 'errors.ts') text += readFileSync(path, 'utf8')
    }
  }
  walk(srcDir)
  for (const code of Object.keys(errorCatalogue)) {
    assert.ok(text.includes(`'${code}'`), `${code} is in the catalogue but nothing in src/ produces it`)
  }
})
