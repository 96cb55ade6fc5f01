/**
 * The RFC rules behind issue #16, table-driven, one RFC section per case
 * name: Age as a list or on several lines, the 304 merge into the stored
 * head, targeted cache-control fields (CDN-Cache-Control), rfc850 dates and
 * the 50-year rule, the stale windows (RFC 5861), Range from a stored 200,
 * and Cache-Status. Pure functions, a fixed clock.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  parseAge, parseHttpDate, responseFreshness, correctedInitialAgeSec, conditionalMatches, staleAllowed, staleUse,
  parseCacheControl, CacheControl, CACHE_LOOKUP, STALE_NEVER, STALE_IF_ERROR, STALE_REVALIDATE, type ResponseView, type RequestView,
} from '../../src/cache/policy'
import { isValidDictionary } from '../../src/cache/structured-field'
import { mergeNotModified, fieldsOfParser, FieldsView } from '../../src/cache/stored-head'
import { ByteRange, parseRange, ifRangeAllows, RANGE_IGNORE, RANGE_SATISFIABLE, RANGE_UNSATISFIABLE } from '../../src/cache/range'
import { renderPartial, CachedResponse } from '../../src/cache/render'
import { CacheEntry } from '../../src/cache/entry'
import { WriteLock, LOCK_ACQUIRED, LOCK_BUSY, LOCK_TAKEN_OVER } from '../../src/cache/write-lock'
import { CTL_INTS, C_LOCK, lockToken } from '../../src/cache/layout'
import { performance } from 'node:perf_hooks'
import { HeadParser, KIND_RESPONSE } from '../../src/http/head-parser'

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0)
const DATE = new Date(NOW).toUTCString()

/** A response view whose fields may repeat: every line of a name joined with ", " (RFC 9110 §5.3), as HeadView does. */
function res (status: number, lines: Array<[string, string]>): ResponseView {
  return {
    status,
    header: (name) => {
      const values = lines.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
      return values.length === 0 ? null : values.join(', ')
    },
  }
}

function req (fields: Record<string, string>): RequestView {
  return { method: 'GET', header: (name) => fields[name] ?? null }
}

function parse304 (text: string): HeadParser {
  const p = new HeadParser(KIND_RESPONSE, { maxHeaderBytes: 8192, maxHeaderCount: 64, maxRequestTargetBytes: 4096 })
  const buf = Buffer.from(text, 'latin1')
  assert.equal(p.execute(buf, 0, buf.length), buf.length)
  return p
}

describe('Age (RFC 9111 §5.1, RFC 9110 §5.3)', () => {
  const cases: Array<[string, string, number]> = [
    ['§5.1 a single value', '7200', 7200],
    ['§5.1 + RFC 9110 §5.3 a list: the first member', '7200, 0', 7200],
    ['§5.1 + RFC 9110 §5.3 two lines joined', '0, 7200', 0],
    ['§5.1 the first valid member when the first is invalid', 'abc, 30', 30],
    ['§5.1 whitespace around the value', '  42 ', 42],
    ['§1.2.2 delta-seconds cap at 2^31', '99999999999999', 2147483648],
    ['§5.1 a parameter makes it invalid', '7200;foo=bar', -1],
    ['§5.1 a numeric parameter makes it invalid', '7200;foo=111', -1],
    ['§1.2.2 a fraction is invalid', '7200.0', -1],
    ['§1.2.2 a sign is invalid', '-7200', -1],
    ['§1.2.2 digits with a space inside are invalid', '72 00', -1],
    ['§5.1 not a number', 'abc', -1],
    ['§5.1 empty', '', -1],
  ]
  for (const [name, value, want] of cases) it(`${name}: ${JSON.stringify(value)}`, () => assert.equal(parseAge(value), want))

  const freshness: Array<[string, Array<[string, string]>, boolean]> = [
    ['§4.2.3 Age 7200, 0 on max-age=3600 is stale', [['age', '7200, 0']], false],
    ['§4.2.3 two Age lines 7200 then 0: stale', [['age', '7200'], ['age', '0']], false],
    ['§4.2.3 two Age lines 0 then 7200: the first, fresh', [['age', '0'], ['age', '7200']], true],
    ['§4.2.3 Age 7200;foo=bar is not taken as fresh', [['age', '7200;foo=bar']], false],
    ['§4.2.3 Age abc is not taken as fresh', [['age', 'abc']], false],
    ['§4.2.3 Age 100 leaves it fresh', [['age', '100']], true],
  ]
  for (const [name, ageLines, fresh] of freshness) {
    it(name, () => {
      const r = res(200, [['cache-control', 'max-age=3600'], ['date', DATE], ['etag', '"v"'], ...ageLines])
      const lifetime = responseFreshness(r, CACHE_LOOKUP, false, false, NOW)
      const age = correctedInitialAgeSec(r, NOW, NOW)
      assert.equal(lifetime, 3_600_000)
      assert.equal(age * 1000 < lifetime, fresh, `age ${age}`)
    })
  }
})

describe('HTTP dates (RFC 9110 §5.6.7)', () => {
  const cases: Array<[string, string, number]> = [
    ['§5.6.7 rfc850 94 is 1994', 'Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(1994, 10, 6, 8, 49, 37)],
    ['§5.6.7 rfc850 26 is this year, not 1926', 'Tuesday, 01-Dec-26 08:00:00 GMT', Date.UTC(2026, 11, 1, 8, 0, 0)],
    ['§5.6.7 rfc850 76 less than 50 years ahead is 2076', 'Monday, 30-Nov-76 12:00:00 GMT', Date.UTC(2076, 10, 30, 12)],
    ['§5.6.7 rfc850 more than 50 years ahead is the past century', 'Wednesday, 02-Dec-76 12:00:00 GMT', Date.UTC(1976, 11, 2, 12)],
    ['§5.6.7 rfc850 99 is 1999', 'Friday, 31-Dec-99 23:59:59 GMT', Date.UTC(1999, 11, 31, 23, 59, 59)],
    ['§5.6.7 IMF-fixdate', 'Tue, 01 Dec 2026 08:00:00 GMT', Date.UTC(2026, 11, 1, 8)],
    ['§5.6.7 asctime', 'Tue Dec  1 08:00:00 2026', Date.UTC(2026, 11, 1, 8)],
  ]
  for (const [name, text, want] of cases) it(name, () => assert.equal(parseHttpDate(text, NOW), want))

  it('§13.1.3 If-Modified-Since in rfc850 form is read against now (304, not 200)', () => {
    const lastModified = 'Tue, 01 Dec 2026 08:00:00 GMT'
    assert.equal(conditionalMatches(req({ 'if-modified-since': 'Tuesday, 01-Dec-26 09:00:00 GMT' }), null, lastModified, NOW), true)
    assert.equal(conditionalMatches(req({ 'if-modified-since': 'Sunday, 06-Nov-94 08:49:37 GMT' }), null, lastModified, NOW), false)
    // the default clock is the real one
    assert.equal(conditionalMatches(req({ 'if-modified-since': new Date().toUTCString().replace(/^(\w+), (\d+) (\w+) \d\d(\d\d)/, 'Xday, $2-$3-$4') }), null, lastModified), true)
  })
})

describe('targeted cache-control fields (RFC 9213)', () => {
  const lifetime = (lines: Array<[string, string]>, targeted = ''): number =>
    responseFreshness(res(200, [['date', DATE], ...lines]), CACHE_LOOKUP, false, false, NOW, new CacheControl(), targeted)
  const cases: Array<[string, Array<[string, string]>, string, number]> = [
    ['§2.1 CDN-Cache-Control max-age over Cache-Control', [['cache-control', 'max-age=10'], ['cdn-cache-control', 'max-age=600']], '', 600_000],
    ['§2.1 CDN-Cache-Control no-store wins over a cacheable Cache-Control', [['cache-control', 'max-age=600'], ['cdn-cache-control', 'no-store']], '', -1],
    ['§2.1 CDN-Cache-Control private', [['cache-control', 'public, max-age=600'], ['cdn-cache-control', 'private']], '', -1],
    ['§2.1 CDN-Cache-Control lets a shared cache store what Cache-Control makes private', [['cache-control', 'private'], ['cdn-cache-control', 'max-age=60']], '', 60_000],
    ['§2.1 CDN-Cache-Control s-maxage', [['cdn-cache-control', 's-maxage=30, max-age=60']], '', 30_000],
    ['§2.1 CDN-Cache-Control no-cache: stored, revalidated', [['cdn-cache-control', 'no-cache'], ['etag', '"a"']], '', 0],
    ['§2.1 Expires is ignored with a targeted field', [['cdn-cache-control', 'max-age=60'], ['expires', new Date(NOW + 600_000).toUTCString()]], '', 60_000],
    ['§2.1 an invalid CDN-Cache-Control is ignored (Cache-Control applies)', [['cache-control', 'max-age=10'], ['cdn-cache-control', 'max-age=60,,']], '', 10_000],
    ['§2.1 an upper-case key is not a valid dictionary', [['cache-control', 'max-age=10'], ['cdn-cache-control', 'Max-Age=60']], '', 10_000],
    ['§2.1 an empty CDN-Cache-Control is ignored', [['cache-control', 'max-age=10'], ['cdn-cache-control', '']], '', 10_000],
    ['§2 our own targeted field first', [['cdn-cache-control', 'max-age=60'], ['switchyard-cache-control', 'max-age=5']], 'switchyard-cache-control', 5_000],
    ['§2 our own field absent: CDN-Cache-Control', [['cdn-cache-control', 'max-age=60']], 'switchyard-cache-control', 60_000],
    ['§2 our own field ignored unless configured', [['switchyard-cache-control', 'max-age=5'], ['cache-control', 'max-age=7']], '', 7_000],
  ]
  for (const [name, lines, targeted, want] of cases) it(name, () => assert.equal(lifetime(lines, targeted), want))

  const dictionaries: Array<[string, string, boolean]> = [
    ['RFC 8941 §3.2 integer members', 'max-age=60, s-maxage=30', true],
    ['RFC 8941 §3.2 boolean members and parameters', 'no-store, private;a=1', true],
    ['RFC 8941 §3.2 string and token values', 'x="a b", y=tok/en', true],
    ['RFC 8941 §3.2 inner list', 'a=(1 2 "x"), b', true],
    ['RFC 8941 §3.2 a trailing comma', 'max-age=60,', false],
    ['RFC 8941 §3.2 an upper-case key', 'MAX-AGE=60', false],
    ['RFC 8941 §3.3.1 a 16-digit integer', 'max-age=1234567890123456', false],
    ['RFC 8941 §3.3.3 an unterminated string', 'x="abc', false],
    ['RFC 8941 §3.2 empty', '   ', false],
  ]
  for (const [name, value, valid] of dictionaries) it(`${name}: ${JSON.stringify(value)}`, () => assert.equal(isValidDictionary(value), valid))
})

describe('a 304 updates the stored response (RFC 9111 §4.3.4, §3.2)', () => {
  const stored = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=3600\r\nETag: "v1"\r\n' +
    'X-Custom: old\r\nX-Custom: older\r\nContent-Length: 5\r\n\r\n', 'latin1')
  const merged = (text: string): FieldsView => FieldsView.ofStored(mergeNotModified(stored, fieldsOfParser(parse304(text))), 200)

  const cases: Array<[string, string, string, string | null]> = [
    ['§4.3.4 Cache-Control is replaced', 'cache-control: max-age=1', 'cache-control', 'max-age=1'],
    ['§4.3.4 ETag is replaced', 'ETag: "v2"', 'etag', '"v2"'],
    ['§4.3.4 Expires is added', 'Expires: Tue, 01 Dec 2026 13:00:00 GMT', 'expires', 'Tue, 01 Dec 2026 13:00:00 GMT'],
    ['§4.3.4 Content-Type is replaced', 'Content-Type: text/html', 'content-type', 'text/html'],
    ['§4.3.4 every stored line of a field is replaced', 'X-Custom: new', 'x-custom', 'new'],
    ['§3.2 Content-Length is never updated', 'Content-Length: 99', 'content-length', '5'],
    ['§3.1 hop-by-hop fields are not stored', 'Keep-Alive: timeout=5', 'keep-alive', null],
    ['§3.1 fields named by Connection are not stored', 'Connection: x-hop\r\nX-Hop: 1', 'x-hop', null],
    ['§3.2 fields the 304 does not carry stay', 'ETag: "v2"', 'content-type', 'text/plain'],
  ]
  for (const [name, field, lookFor, want] of cases) {
    it(name, () => assert.equal(merged(`HTTP/1.1 304 Not Modified\r\n${field}\r\n\r\n`).header(lookFor), want))
  }

  it('§4.3.4 the merged head sets the freshness (max-age=1, not the stored hour)', () => {
    const view = merged('HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=1\r\n\r\n')
    assert.equal(responseFreshness(view, CACHE_LOOKUP, false, false, NOW), 1000)
    assert.equal(view.header('etag'), '"v1"')
  })

  it('§4.3.4 a 304 with nothing to update keeps the stored bytes', () => {
    assert.equal(mergeNotModified(stored, fieldsOfParser(parse304('HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n'))), stored)
  })
})

describe('serving stale (RFC 9111 §4.2.4, RFC 5861)', () => {
  const cc = new CacheControl()
  const allowed: Array<[string, string, boolean]> = [
    ['§4.2.4 plain max-age may be served stale', 'max-age=60, stale-while-revalidate=30', true],
    ['§5.2.2.2 must-revalidate: never stale', 'max-age=60, must-revalidate, stale-if-error=60', false],
    ['§5.2.2.8 proxy-revalidate: never stale', 'max-age=60, proxy-revalidate, stale-while-revalidate=60', false],
    ['§5.2.2.10 s-maxage implies proxy-revalidate: never stale', 's-maxage=60, stale-while-revalidate=60', false],
    ['§5.2.2.4 no-cache: never stale', 'no-cache, stale-if-error=60', false],
  ]
  for (const [name, value, want] of allowed) it(name, () => { parseCacheControl(value, cc); assert.equal(staleAllowed(cc), want) })

  it('RFC 5861 §3, §4 the directives are read (first wins, invalid = absent)', () => {
    parseCacheControl('stale-while-revalidate=30, stale-if-error=600, stale-while-revalidate=1', cc)
    assert.equal(cc.staleWhileRevalidateSec, 30)
    assert.equal(cc.staleIfErrorSec, 600)
    parseCacheControl('stale-while-revalidate=x, stale-if-error', cc)
    assert.equal(cc.staleWhileRevalidateSec, -1)
    assert.equal(cc.staleIfErrorSec, -1)
  })

  const uses: Array<[string, boolean, number, number, number, number, number]> = [
    // name, neverStale, swr s, sie s, default ms, stale ms, want
    ['RFC 5861 §3 within stale-while-revalidate', false, 30, -1, 0, 10_000, STALE_REVALIDATE],
    ['RFC 5861 §3 past stale-while-revalidate, no stale-if-error', false, 30, -1, 0, 31_000, STALE_NEVER],
    ['RFC 5861 §4 within stale-if-error', false, -1, 60, 0, 59_000, STALE_IF_ERROR],
    ['RFC 5861 §4 past stale-if-error', false, -1, 60, 0, 61_000, STALE_NEVER],
    ['RFC 5861 §4 the configured default when the response names none', false, -1, -1, 120_000, 100_000, STALE_IF_ERROR],
    ['RFC 5861 §4 the response own stale-if-error over the default', false, -1, 10, 120_000, 100_000, STALE_NEVER],
    ['RFC 9111 §4.2.4 never stale beats both', true, 30, 60, 120_000, 1_000, STALE_NEVER],
    ['RFC 9111 §4.2 a fresh entry is not stale', false, 30, 60, 0, -1, STALE_NEVER],
  ]
  for (const [name, never, swr, sie, def, staleMs, want] of uses) it(name, () => assert.equal(staleUse(never, swr, sie, def, staleMs), want))
})

describe('Range from a stored 200 (RFC 9110 §14)', () => {
  const r = new ByteRange()
  const cases: Array<[string, string, number, number, number?, number?]> = [
    // name, Range, length, want, first, last
    ['§14.1.2 int-range', 'bytes=2-4', 10, RANGE_SATISFIABLE, 2, 4],
    ['§14.1.2 open int-range', 'bytes=7-', 10, RANGE_SATISFIABLE, 7, 9],
    ['§14.1.2 suffix-range', 'bytes=-3', 10, RANGE_SATISFIABLE, 7, 9],
    ['§14.1.2 a suffix longer than the representation is all of it', 'bytes=-30', 10, RANGE_SATISFIABLE, 0, 9],
    ['§14.1.2 last-pos past the end is the end', 'bytes=8-100', 10, RANGE_SATISFIABLE, 8, 9],
    ['§14.1 the unit is case-insensitive, OWS allowed', ' Bytes= 1 - 2 ', 10, RANGE_SATISFIABLE, 1, 2],
    ['§14.1.2 first-pos at the end: unsatisfiable', 'bytes=10-', 10, RANGE_UNSATISFIABLE],
    ['§14.1.2 suffix-length 0: unsatisfiable', 'bytes=-0', 10, RANGE_UNSATISFIABLE],
    ['§14.1.2 any range of an empty body: unsatisfiable', 'bytes=0-', 0, RANGE_UNSATISFIABLE],
    ['§14.2 several ranges: ignored (the whole 200)', 'bytes=0-1,3-4', 10, RANGE_IGNORE],
    ['§14.2 another unit: ignored', 'items=0-1', 10, RANGE_IGNORE],
    ['§14.1.1 first > last: invalid, ignored', 'bytes=5-2', 10, RANGE_IGNORE],
    ['§14.1.1 not digits: invalid, ignored', 'bytes=a-b', 10, RANGE_IGNORE],
    ['§14.1.1 no dash: invalid, ignored', 'bytes=5', 10, RANGE_IGNORE],
    ['§14.1.1 a lone dash: invalid, ignored', 'bytes=-', 10, RANGE_IGNORE],
  ]
  for (const [name, value, length, want, first, last] of cases) {
    it(`${name}: ${JSON.stringify(value)}`, () => {
      assert.equal(parseRange(value, length, r), want)
      if (want === RANGE_SATISFIABLE) assert.deepEqual([r.first, r.last], [first, last])
    })
  }

  const ifRange: Array<[string, string | null, string | null, string | null, boolean]> = [
    ['§13.1.5 no If-Range: the range applies', null, '"a"', null, true],
    ['§13.1.5 the stored strong ETag', '"a"', '"a"', null, true],
    ['§13.1.5 another ETag', '"b"', '"a"', null, false],
    ['§13.1.5 a weak ETag never matches (strong comparison)', 'W/"a"', 'W/"a"', null, false],
    ['§13.1.5 the exact Last-Modified', 'Tue, 01 Dec 2026 08:00:00 GMT', null, 'Tue, 01 Dec 2026 08:00:00 GMT', true],
    ['§13.1.5 another date', 'Tue, 01 Dec 2026 09:00:00 GMT', null, 'Tue, 01 Dec 2026 08:00:00 GMT', false],
  ]
  for (const [name, value, etag, lastModified, want] of ifRange) it(name, () => assert.equal(ifRangeAllows(value, etag, lastModified), want))

  it('§15.3.7 a 206 keeps the stored fields, with Content-Range and the part\'s length; §15.5.17 a 416 names the length', () => {
    const e = new CacheEntry()
    e.status = 200
    e.head = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nETag: "a"\r\n\r\n', 'latin1')
    e.body = Buffer.from('abcdefghij')
    e.freshForMs = 60_000
    e.currentAgeMs = 5_000
    assert.equal(parseRange('bytes=2-4', 10, r), RANGE_SATISFIABLE)
    const partial = renderPartial(e, r, 'HIT', 'switchyard; hit; ttl=55', new CachedResponse())
    assert.equal(partial.status, 206)
    assert.equal(partial.head, 'HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\nETag: "a"\r\n' +
      'Content-Range: bytes 2-4/10\r\nContent-Length: 3\r\nAge: 5\r\nX-Cache: HIT\r\nCache-Status: switchyard; hit; ttl=55\r\n')
    assert.equal(partial.body?.toString(), 'cde')
    const unsatisfiable = renderPartial(e, null, 'HIT', 'switchyard; hit; ttl=55', new CachedResponse())
    assert.equal(unsatisfiable.status, 416)
    assert.match(unsatisfiable.head, /^HTTP\/1\.1 416 Range Not Satisfiable\r\nContent-Range: bytes \*\/10\r\nContent-Length: 0\r\n/)
    assert.equal(unsatisfiable.body, null)
  })
})

describe('the write lock (issue #16: a store waits for it briefly instead of being skipped)', () => {
  it('a lock released by another holder during the spin is acquired; one held past the spin is BUSY', () => {
    const ctl = new Int32Array(new SharedArrayBuffer(CTL_INTS * 4))
    const holder = new WriteLock(ctl, 5000)
    const waiter = new WriteLock(ctl, 5000)
    assert.equal(holder.tryAcquire(1), LOCK_ACQUIRED)
    assert.equal(waiter.tryAcquire(2), LOCK_BUSY)
    const started = performance.now()
    assert.equal(waiter.acquireWithin(2, 2), LOCK_BUSY)
    assert.ok(performance.now() - started >= 2, 'it spun for its budget')
    holder.release()
    assert.equal(waiter.acquireWithin(2, 2), LOCK_ACQUIRED)
    waiter.release()
    assert.equal(Atomics.load(ctl, C_LOCK), 0)
  })

  it('a lock held past its lease is taken over (the caller resets what it guards)', () => {
    const ctl = new Int32Array(new SharedArrayBuffer(CTL_INTS * 4))
    Atomics.store(ctl, C_LOCK, lockToken(Date.now() - 60_000))
    assert.equal(new WriteLock(ctl, 1000).acquireWithin(1, 1), LOCK_TAKEN_OVER)
  })
})
