/**
 * RFC 9111 decisions of a shared cache (src/cache/policy.ts), its parsers
 * (Cache-Control, HTTP-date), the cache keys (src/cache/key.ts) and the
 * HeadParser adapter. Pure functions: table-driven, a fixed clock.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  CacheControl, parseCacheControl, parseHttpDate, requestCacheMode, responseFreshness, correctedInitialAgeSec,
  remainingFreshMs, freshEnoughForRequest, staleAcceptedByRequest, mustRevalidate, varyNames, conditionalMatches,
  CACHE_BYPASS, CACHE_LOOKUP, CACHE_REVALIDATE, type RequestView, type ResponseView,
} from '../../src/cache/policy'
import { primaryKey, varyValues, variantKey } from '../../src/cache/key'
import { HeadView } from '../../src/cache/head-view'
import { HeadParser, KIND_REQUEST } from '../../src/http/head-parser'

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0)
const DATE = new Date(NOW).toUTCString() // IMF-fixdate

type Fields = Record<string, string>

function req (method: string, fields: Fields = {}): RequestView {
  return { method, header: (name) => fields[name] ?? null }
}

function res (status: number, fields: Fields = {}): ResponseView {
  return { status, header: (name) => fields[name] ?? null }
}

function fresh (status: number, fields: Fields, opts: { auth?: boolean, cacheAuthorized?: boolean, mode?: number } = {}): number {
  return responseFreshness(res(status, fields), opts.mode ?? CACHE_LOOKUP, opts.auth ?? false, opts.cacheAuthorized ?? false, NOW)
}

describe('parseCacheControl', () => {
  const cc = new CacheControl()

  it('reads directives case-insensitively, with token or quoted arguments', () => {
    parseCacheControl('Public, MAX-AGE="60", s-maxage=30 ,no-cache="Set-Cookie, X-Foo", Must-Revalidate', cc)
    assert.equal(cc.isPublic, true)
    assert.equal(cc.maxAgeSec, 60)
    assert.equal(cc.sMaxAgeSec, 30)
    assert.equal(cc.noCache, true)
    assert.equal(cc.mustRevalidate, true)
    assert.equal(cc.noStore, false)
  })

  it('resets between parses, ignores unknown directives and keeps the first duplicate', () => {
    parseCacheControl('no-store, private', cc)
    parseCacheControl('max-age=10, foo=bar, max-age=99, stale-while-revalidate=5', cc)
    assert.equal(cc.noStore, false)
    assert.equal(cc.isPrivate, false)
    assert.equal(cc.maxAgeSec, 10)
  })

  it('an invalid or missing max-age is 0 (stale, RFC 9111 §4.2.1); huge values cap at 2^31', () => {
    parseCacheControl('max-age=abc', cc)
    assert.equal(cc.maxAgeSec, 0)
    parseCacheControl('max-age', cc)
    assert.equal(cc.maxAgeSec, 0)
    parseCacheControl('max-age=99999999999999999999', cc)
    assert.equal(cc.maxAgeSec, 2147483648)
    parseCacheControl('', cc)
    assert.equal(cc.maxAgeSec, -1)
  })

  it('request directives', () => {
    parseCacheControl('min-fresh=5, only-if-cached, proxy-revalidate', cc)
    assert.equal(cc.minFreshSec, 5)
    assert.equal(cc.onlyIfCached, true)
    assert.equal(cc.proxyRevalidate, true)
    assert.equal(mustRevalidate(cc), true)
  })
})

describe('parseHttpDate', () => {
  const when = Date.UTC(1994, 10, 6, 8, 49, 37)
  it('accepts the three formats of RFC 9110 §5.6.7', () => {
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT', NOW), when)
    assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW), when)
    assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994', NOW), when)
    assert.equal(parseHttpDate(' Sun, 06 Nov 1994 08:49:37 GMT ', NOW), when)
  })
  it('rejects the rest', () => {
    for (const bad of ['0', '', 'Sun, 06 Nov 1994 08:49:37 UTC', 'Sun, 06 nov 1994 08:49:37 GMT', 'Sun, 6 Nov 1994 08:49:37 GMT',
      'Sun, 06 Nov 1994 25:49:37 GMT', '2025-01-15T12:00:00Z']) {
      assert.ok(Number.isNaN(parseHttpDate(bad, NOW)), bad)
    }
  })
  it('a two-digit year more than 50 years ahead is in the past century', () => {
    assert.equal(parseHttpDate('Monday, 01-Jan-74 00:00:00 GMT', NOW), Date.UTC(2074, 0, 1))
    assert.equal(parseHttpDate('Monday, 01-Jan-76 00:00:00 GMT', NOW), Date.UTC(1976, 0, 1))
  })
})

describe('requestCacheMode', () => {
  const cases: Array<[string, RequestView, boolean, number]> = [
    ['GET', req('GET'), false, CACHE_LOOKUP],
    ['HEAD', req('HEAD'), false, CACHE_LOOKUP],
    ['POST', req('POST'), false, CACHE_BYPASS],
    ['DELETE', req('DELETE'), false, CACHE_BYPASS],
    ['Authorization, not configured (§3.5)', req('GET', { authorization: 'Bearer x' }), false, CACHE_BYPASS],
    ['Authorization, configured', req('GET', { authorization: 'Bearer x' }), true, CACHE_LOOKUP],
    ['no-store (§5.2.1.5)', req('GET', { 'cache-control': 'No-Store' }), false, CACHE_BYPASS],
    ['no-cache (§5.2.1.4)', req('GET', { 'cache-control': 'no-cache' }), false, CACHE_REVALIDATE],
    ['max-age=0', req('GET', { 'cache-control': 'max-age=0' }), false, CACHE_REVALIDATE],
    ['max-age=5', req('GET', { 'cache-control': 'max-age=5' }), false, CACHE_LOOKUP],
    ['Pragma: no-cache without Cache-Control (§5.4)', req('GET', { pragma: 'no-cache' }), false, CACHE_REVALIDATE],
    ['Pragma ignored when Cache-Control is present', req('GET', { pragma: 'no-cache', 'cache-control': 'max-age=5' }), false, CACHE_LOOKUP],
  ]
  for (const [name, r, authorized, want] of cases) {
    it(name, () => assert.equal(requestCacheMode(r, authorized), want))
  }

  it('leaves the request directives for freshEnoughForRequest', () => {
    const cc = new CacheControl()
    requestCacheMode(req('GET', { 'cache-control': 'max-age=10, min-fresh=5' }), false, cc)
    assert.equal(freshEnoughForRequest(cc, 9_000, 60_000), true)
    assert.equal(freshEnoughForRequest(cc, 11_000, 60_000), false) // older than max-age
    assert.equal(freshEnoughForRequest(cc, 1_000, 5_000), false) // 4 s left < min-fresh 5 s
  })

  it('max-stale (RFC 9111 §5.2.1.2): parsed with or without a value; an unreadable one accepts nothing', () => {
    const cc = new CacheControl()
    const parsed: Array<[string, number]> = [
      ['max-stale', 2147483648], ['max-stale=30', 30], ['MAX-STALE="30"', 30], ['max-stale=0', 0],
      ['max-stale=abc', -1], ['max-stale=-1', -1], ['max-stale=30, max-stale=5', 30], ['max-age=5', -1],
    ]
    for (const [value, want] of parsed) {
      parseCacheControl(value, cc)
      assert.equal(cc.maxStaleSec, want, value)
    }
  })

  it('staleAcceptedByRequest: staleness in whole seconds within max-stale, max-age still holds, never with min-fresh', () => {
    const cc = new CacheControl()
    const cases: Array<[string, number, number, boolean]> = [
      // [request Cache-Control, age ms, freshness lifetime ms, served stale]
      ['max-stale=60', 100_000, 60_000, true], // 40 s stale
      ['max-stale=60', 120_999, 60_000, true], // 60.999 s: 60 whole seconds
      ['max-stale=60', 121_000, 60_000, false],
      ['max-stale', 1e12, 60_000, true],
      ['max-stale=0', 60_500, 60_000, true], // stale by 0 whole seconds, as the client reads Age
      ['max-stale=0', 61_000, 60_000, false],
      ['max-stale=60', 59_000, 60_000, false], // fresh: not this function's business
      ['', 100_000, 60_000, false],
      ['max-stale=60, max-age=90', 100_000, 60_000, false], // older than max-age
      ['max-stale=60, max-age=120', 100_000, 60_000, true],
      ['max-stale=60, min-fresh=0', 100_000, 60_000, false],
      ['max-stale, no-cache', 100_000, 60_000, true], // no-cache makes the request CACHE_REVALIDATE before this is asked
    ]
    for (const [value, age, freshFor, want] of cases) {
      parseCacheControl(value, cc)
      assert.equal(staleAcceptedByRequest(cc, age, freshFor), want, `${value} age ${age} lifetime ${freshFor}`)
    }
  })
})

describe('responseFreshness', () => {
  const ETAG = { etag: '"v1"' }

  it('default-cacheable statuses (RFC 9110 §15.1) without explicit freshness: lifetime 0 with a validator, else not stored', () => {
    for (const status of [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]) {
      assert.equal(fresh(status, { ...ETAG, date: DATE }), 0, `${status} with ETag`)
      assert.equal(fresh(status, { date: DATE }), -1, `${status} without validator`)
    }
    assert.equal(fresh(200, { 'last-modified': DATE }), 0)
  })

  it('other statuses only with explicit freshness; never 206, 304, 1xx', () => {
    assert.equal(fresh(302, { ...ETAG }), -1)
    assert.equal(fresh(302, { 'cache-control': 'max-age=60' }), 60_000)
    assert.equal(fresh(500, { expires: new Date(NOW + 30_000).toUTCString(), date: DATE }), 30_000)
    assert.equal(fresh(206, { 'cache-control': 'max-age=60' }), -1)
    assert.equal(fresh(304, { 'cache-control': 'max-age=60' }), -1)
    assert.equal(fresh(101, { 'cache-control': 'max-age=60' }), -1)
  })

  it('s-maxage over max-age over Expires - Date (§4.2.1)', () => {
    const expires = new Date(NOW + 300_000).toUTCString()
    assert.equal(fresh(200, { 'cache-control': 'max-age=60, s-maxage=120', expires, date: DATE }), 120_000)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', expires, date: DATE }), 60_000)
    assert.equal(fresh(200, { expires, date: DATE }), 300_000)
    // no Date: the receipt time stands in for it
    assert.equal(fresh(200, { expires }), 300_000)
  })

  it('an invalid Expires is in the past (§5.3)', () => {
    assert.equal(fresh(200, { expires: '0', date: DATE }), -1)
    assert.equal(fresh(200, { expires: '0', date: DATE, ...ETAG }), 0)
  })

  it('never stores no-store, private, Set-Cookie or Vary: *', () => {
    assert.equal(fresh(200, { 'cache-control': 'no-store, max-age=60' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'private, max-age=60' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'private="x-user", max-age=60' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', 'set-cookie': 'a=b' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', vary: 'accept-encoding, *' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', vary: 'Accept-Encoding' }), 60_000)
  })

  it('nothing for a bypassed request', () => {
    assert.equal(fresh(200, { 'cache-control': 'max-age=60' }, { mode: CACHE_BYPASS }), -1)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60' }, { mode: CACHE_REVALIDATE }), 60_000)
  })

  it('no-cache and must-revalidate with max-age=0: stored with lifetime 0 only with a validator', () => {
    assert.equal(fresh(200, { 'cache-control': 'no-cache, max-age=600', ...ETAG }), 0)
    assert.equal(fresh(200, { 'cache-control': 'no-cache, max-age=600' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'must-revalidate, max-age=0', ...ETAG }), 0)
    assert.equal(fresh(200, { 'cache-control': 'must-revalidate, max-age=0' }), -1)
  })

  it('Authorization (§3.5): only when configured and the response is public, s-maxage or must-revalidate', () => {
    const auth = { auth: true, cacheAuthorized: true }
    assert.equal(fresh(200, { 'cache-control': 'max-age=60' }, auth), -1)
    assert.equal(fresh(200, { 'cache-control': 'public, max-age=60' }, auth), 60_000)
    assert.equal(fresh(200, { 'cache-control': 's-maxage=30' }, auth), 30_000)
    assert.equal(fresh(200, { 'cache-control': 'must-revalidate, max-age=60' }, auth), 60_000)
    assert.equal(fresh(200, { 'cache-control': 'public, max-age=60' }, { auth: true, cacheAuthorized: false }), -1)
  })

  it('a response already stale on arrival (Age, or an old Date) is stored only with a validator', () => {
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', age: '70' }), -1)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', age: '70', ...ETAG }), 60_000)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', age: '30' }), 60_000)
    assert.equal(fresh(200, { 'cache-control': 'max-age=60', date: new Date(NOW - 61_000).toUTCString() }), -1)
  })
})

describe('age and freshness (RFC 9111 §4.2.3)', () => {
  it('corrected_initial_age: the larger of apparent age and Age + response delay', () => {
    // Age 10 s, 2 s round trip, Date matches the receipt: 12 s
    assert.equal(correctedInitialAgeSec(res(200, { age: '10', date: DATE }), NOW - 2000, NOW), 12)
    // Date 30 s behind the receipt, no Age: apparent age wins; the Date names a whole second,
    // taken at its latest instant, so 29.0xx s -> 29 (a response is never made older by rounding)
    assert.equal(correctedInitialAgeSec(res(200, { date: new Date(NOW - 30_000).toUTCString() }), NOW, NOW), 29)
    // a Date in the future counts as 0
    assert.equal(correctedInitialAgeSec(res(200, { date: new Date(NOW + 30_000).toUTCString() }), NOW, NOW), 0)
    // an Age present but unreadable must not make the response fresh (RFC 9111 §5.1): the largest age
    assert.equal(correctedInitialAgeSec(res(200, { date: new Date(NOW + 30_000).toUTCString(), age: 'x' }), NOW, NOW), 2147483647)
  })

  it('remaining freshness counts the resident time and the initial age', () => {
    assert.equal(remainingFreshMs(60_000, 10, NOW, NOW + 20_000), 30_000)
    assert.ok(remainingFreshMs(60_000, 10, NOW, NOW + 50_000) <= 0)
  })
})

describe('varyNames', () => {
  it('lower-cases, trims and de-duplicates; null when absent; ["*"] for a star', () => {
    assert.deepEqual(varyNames(res(200, { vary: 'Accept-Encoding, ACCEPT-LANGUAGE ,accept-encoding' })), ['accept-encoding', 'accept-language'])
    assert.equal(varyNames(res(200)), null)
    assert.equal(varyNames(res(200, { vary: ' , ' })), null)
    assert.deepEqual(varyNames(res(200, { vary: 'accept, *' })), ['*'])
  })
})

describe('conditionalMatches (RFC 9110 §13.1, §13.2.2)', () => {
  const LM = 'Wed, 15 Jan 2025 10:00:00 GMT'
  const cases: Array<[string, Fields, string | null, string | null, boolean, string?]> = [
    ['If-None-Match equal', { 'if-none-match': '"v1"' }, '"v1"', null, true],
    ['If-None-Match weak comparison both ways', { 'if-none-match': 'W/"v1"' }, '"v1"', null, true],
    ['stored weak tag', { 'if-none-match': '"v1"' }, 'W/"v1"', null, true],
    ['If-None-Match list', { 'if-none-match': '"a", W/"b" ,"v1"' }, '"v1"', null, true],
    ['If-None-Match tag with a comma inside', { 'if-none-match': '"x,y"' }, '"x,y"', null, true],
    ['If-None-Match other', { 'if-none-match': '"a", "b"' }, '"v1"', null, false],
    ['If-None-Match *', { 'if-none-match': '*' }, null, null, true],
    ['no stored ETag', { 'if-none-match': '"v1"' }, null, LM, false],
    ['If-None-Match wins over If-Modified-Since', { 'if-none-match': '"a"', 'if-modified-since': LM }, '"v1"', LM, false],
    ['If-Modified-Since, not modified since', { 'if-modified-since': 'Wed, 15 Jan 2025 11:00:00 GMT' }, null, LM, true],
    ['If-Modified-Since, same second', { 'if-modified-since': LM }, null, LM, true],
    ['If-Modified-Since, modified after', { 'if-modified-since': 'Wed, 15 Jan 2025 09:00:00 GMT' }, null, LM, false],
    ['If-Modified-Since invalid date ignored', { 'if-modified-since': 'yesterday' }, null, LM, false],
    ['If-Modified-Since without Last-Modified', { 'if-modified-since': LM }, '"v1"', null, false],
    ['If-Modified-Since on POST ignored', { 'if-modified-since': LM }, null, LM, false, 'POST'],
  ]
  for (const [name, fields, etag, lastModified, want, method] of cases) {
    it(name, () => assert.equal(conditionalMatches(req(method ?? 'GET', fields), etag, lastModified), want))
  }
})

describe('cache keys', () => {
  it('primaryKey: host case and the default port do not matter; absolute-form carries its authority', () => {
    assert.equal(primaryKey('Example.COM', '/a?b=1'), 'example.com /a?b=1')
    assert.equal(primaryKey('example.com:80', '/a'), 'example.com /a')
    assert.equal(primaryKey('example.com:8080', '/a'), 'example.com:8080 /a')
    assert.equal(primaryKey('ignored', 'http://Example.com:80/x?y'), 'example.com /x?y')
    assert.equal(primaryKey('ignored', 'HTTP://example.com'), 'example.com /')
    assert.notEqual(primaryKey('example.com', '/A'), primaryKey('example.com', '/a'))
  })

  it('varyValues: whitespace around commas is dropped, absent differs from empty', () => {
    const names = ['accept-encoding', 'accept-language']
    const a = varyValues(names, req('GET', { 'accept-encoding': 'gzip, br', 'accept-language': 'en' }))
    const b = varyValues(names, req('GET', { 'accept-encoding': ' gzip ,br ', 'accept-language': 'en' }))
    assert.equal(a, b)
    assert.notEqual(varyValues(['x'], req('GET', {})), varyValues(['x'], req('GET', { x: '' })))
    assert.notEqual(variantKey('h /', 1, a), variantKey('h /', 2, a))
    assert.ok(!variantKey('h /', 1, a).startsWith('h / '))
  })
})

describe('HeadView over HeadParser', () => {
  it('joins repeated field lines with ", " and exposes method', () => {
    const parser = new HeadParser(KIND_REQUEST, { maxHeaderBytes: 8192, maxHeaderCount: 64, maxRequestTargetBytes: 4096 })
    const text = 'GET /x HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=5\r\ncache-control: no-cache\r\nIf-None-Match: "a"\r\n\r\n'
    const buf = Buffer.from(text, 'latin1')
    assert.equal(parser.execute(buf, 0, buf.length), buf.length)
    const view = new HeadView(parser)
    assert.equal(view.method, 'GET')
    assert.equal(view.header('cache-control'), 'max-age=5, no-cache')
    assert.equal(view.header('if-none-match'), '"a"')
    assert.equal(view.header('authorization'), null)
    assert.equal(requestCacheMode(view, false), CACHE_REVALIDATE)
  })
})
