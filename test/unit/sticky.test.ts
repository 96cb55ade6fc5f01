/**
 * Sticky-session cookies: round trip, unforgeability (forged, tampered,
 * truncated, foreign-secret values route nowhere), Cookie header parsing, and
 * that the value never reveals the upstream's address.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { UpstreamEntry } from '../../src/shared/state'
import type { StickyConfig } from '../../src/config/types'
import { SwitchyardError } from '../../src/errors'
import { createSticky, findCookie, resolveStickySecret, stickyCookieValue } from '../../src/sticky'

function entry (index: number, address: string): UpstreamEntry {
  const colon = address.lastIndexOf(':')
  return { slot: index, index, pool: 'default', poolSlot: 0, address, host: address.slice(0, colon), port: Number(address.slice(colon + 1)), weight: 1, id: `u${index}` }
}

const SECRET = 'a-test-secret-of-some-length'
const config: StickyConfig = { cookie: 'swy', secret: SECRET }
const table = [entry(0, '127.0.0.1:8081'), entry(1, '127.0.0.1:8082'), entry(2, '[::1]:8083')]

/** The cookie value inside a Set-Cookie line. */
function valueOf (line: string): string {
  const match = /^Set-Cookie: swy=([^;]+);/.exec(line)
  assert.ok(match !== null, line)
  return match[1]
}

describe('sticky cookie', () => {
  const sticky = createSticky(config, table)
  const values = table.map((_, i) => valueOf(sticky.setCookieLine(i)))

  it('routes each upstream\'s own cookie back to it', () => {
    values.forEach((value, i) => assert.equal(sticky.route(`swy=${value}`), i))
    assert.equal(new Set(values).size, 3)
  })

  it('sets Path, HttpOnly, SameSite and Max-Age', () => {
    assert.equal(sticky.setCookieLine(0), `Set-Cookie: swy=${values[0]}; Path=/; HttpOnly; SameSite=Lax\r\n`)
    const aged = createSticky({ ...config, maxAgeSeconds: 3600 }, table)
    assert.equal(aged.setCookieLine(1), `Set-Cookie: swy=${values[1]}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600\r\n`)
    assert.equal(sticky.setCookieLine(3), '')
    assert.equal(sticky.setCookieLine(-1), '')
  })

  it('does not reveal the address', () => {
    for (const [i, value] of values.entries()) {
      assert.match(value, /^[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{16}$/)
      const { address, host, port } = table[i]
      for (const secretish of [address, host, String(port), Buffer.from(address).toString('base64url'), Buffer.from(address).toString('hex')]) {
        assert.ok(!value.includes(secretish), `${value} contains ${secretish}`)
      }
    }
  })

  it('is stable across restarts and list order with the same secret, different with another', () => {
    const reordered = createSticky(config, [table[2], table[0], table[1]])
    assert.equal(reordered.route(`swy=${values[0]}`), 1)
    assert.equal(reordered.route(`swy=${values[2]}`), 0)
    assert.equal(stickyCookieValue(SECRET, table[1].address), values[1])
    const other = createSticky({ ...config, secret: 'another-secret-entirely' }, table)
    assert.notEqual(valueOf(other.setCookieLine(0)), values[0])
    values.forEach((value) => assert.equal(other.route(`swy=${value}`), -1))
  })

  it('ignores forged, tampered and truncated values', () => {
    const v = values[1]
    const flip = (s: string, at: number): string => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1)
    for (let at = 0; at < v.length; at++) assert.equal(sticky.route(`swy=${flip(v, at)}`), -1, `changed at ${at}`)
    assert.equal(sticky.route(`swy=${v.slice(0, -1)}`), -1)
    assert.equal(sticky.route(`swy=${v}A`), -1)
    assert.equal(sticky.route(`swy=${v.slice(0, 12)}`), -1)
    assert.equal(sticky.route(`swy=${v.slice(0, 12)}.${values[0].slice(13)}`), -1) // one upstream's id, another's mac
    assert.equal(sticky.route(`swy=${v.replace('.', '-')}`), -1)
    assert.equal(sticky.route('swy=127.0.0.1:8082'), -1)
    assert.equal(sticky.route('swy='), -1)
    assert.equal(sticky.route('swy="'), -1)
  })

  it('finds the cookie among others, quoted, padded, or repeated', () => {
    assert.equal(sticky.route(`a=1; swy=${values[2]}; b=2`), 2)
    assert.equal(sticky.route(`a=1;swy=${values[2]}`), 2)
    assert.equal(sticky.route(`swy="${values[1]}"`), 1)
    assert.equal(sticky.route(` swy = ${values[0]} ;`), 0)
    assert.equal(sticky.route(`swy=stale-or-forged; swy=${values[1]}`), 1)
  })

  it('routes nowhere without the cookie', () => {
    assert.equal(sticky.route(null), -1)
    assert.equal(sticky.route(''), -1)
    assert.equal(sticky.route('a=1; b=2'), -1)
    assert.equal(sticky.route(`swyx=${values[0]}`), -1)
    assert.equal(sticky.route(`xswy=${values[0]}`), -1)
    assert.equal(sticky.route(`SWY=${values[0]}`), -1)
    assert.equal(sticky.route(`a=swy=${values[0]}`), -1)
  })

  it('routes every one of 64 upstreams and no forgery of them', () => {
    const many = Array.from({ length: 64 }, (_, i) => entry(i, `10.0.${i >> 4}.${i & 15}:80`))
    const router = createSticky(config, many)
    for (let i = 0; i < many.length; i++) {
      const value = valueOf(router.setCookieLine(i))
      assert.equal(router.route(`swy=${value}`), i)
      const forgedValue = value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A')
      assert.equal(router.route(`swy=${forgedValue}`), -1)
    }
  })

  it('works with an empty table', () => {
    const empty = createSticky(config, [])
    assert.equal(empty.route(`swy=${values[0]}`), -1)
  })
})

describe('sticky secret', () => {
  it('is the configured one, or a fresh random one', () => {
    assert.equal(resolveStickySecret(config), SECRET)
    const a = resolveStickySecret({ cookie: 'swy' })
    const b = resolveStickySecret({ cookie: 'swy' })
    assert.match(a, /^[A-Za-z0-9_-]{43}$/)
    assert.notEqual(a, b)
  })

  it('must be resolved before threads build routers', () => {
    assert.throws(() => createSticky({ cookie: 'swy' }, table), (err: unknown) => err instanceof SwitchyardError && err.code === 'SWY_ERR_CONFIG_INVALID')
    const secret = resolveStickySecret({ cookie: 'swy' })
    const first = createSticky({ cookie: 'swy' }, table, secret)
    const second = createSticky({ cookie: 'swy' }, table, secret)
    assert.equal(second.route(`swy=${valueOf(first.setCookieLine(2))}`), 2)
  })
})

describe('findCookie', () => {
  it('parses RFC 6265 cookie strings', () => {
    assert.equal(findCookie('a=1; b=2; c=3', 'b'), '2')
    assert.equal(findCookie('a=1; b=2; c=3', 'c'), '3')
    assert.equal(findCookie('a=1; b=2; c=3', 'a'), '1')
    assert.equal(findCookie('a=1; b=2', 'd'), null)
    assert.equal(findCookie('', 'a'), null)
    assert.equal(findCookie('a=', 'a'), '')
    assert.equal(findCookie('a="x y"', 'a'), 'x y')
    assert.equal(findCookie('a="', 'a'), '"')
    assert.equal(findCookie('flag; a=1', 'a'), '1')
    assert.equal(findCookie('flag; a=1', 'flag'), null)
    assert.equal(findCookie('A=1; a=2', 'a'), '2')
    assert.equal(findCookie('a=1=2; b', 'a'), '1=2')
    assert.equal(findCookie('\ta = 1 ;b=2', 'a'), '1')
    assert.equal(findCookie('ab=1; b=2', 'b'), '2')
    assert.equal(findCookie('a=1; a=2', 'a'), '1')
  })
})
