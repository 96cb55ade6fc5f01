/**
 * The route matcher and the routing config checks, table-driven: host exact
 * and wildcard (one label), segment-boundary prefixes after the firewall's
 * normalisation, exact paths, regexes, methods, headers, first match wins;
 * the indexed matcher agrees with a scan of every route (property test);
 * rewrites never produce an invalid target; config errors carry their JSON
 * path; shadowed routes are found.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { HeadParser, KIND_REQUEST, HEAD_ERROR, HEAD_INCOMPLETE } from '../../src/http/head-parser'
import { resolveConfig } from '../../src/config/load'
import { ConfigError } from '../../src/errors'
import { SharedState } from '../../src/shared/state'
import { buildUpstreamTable } from '../../src/shared/upstreams'
import { buildPools } from '../../src/routing/pools'
import { compileRouter, encodePath, segmentPrefix, type Router, type RouteLookup } from '../../src/routing/router'
import { shadowedRoutes, duplicateKeysIn } from '../../src/routing/check'
import { Template } from '../../src/routing/templates'

const LIMITS = { maxHeaderBytes: 16384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 }

function parse (head: string): HeadParser {
  const p = new HeadParser(KIND_REQUEST, LIMITS)
  const buf = Buffer.from(head, 'latin1')
  const r = p.execute(buf, 0, buf.length)
  assert.ok(r !== HEAD_ERROR && r !== HEAD_INCOMPLETE, `test request parses: ${JSON.stringify(head)} ${p.errorDetail}`)
  return p
}

function request (method: string, target: string, host: string | null, headers: Record<string, string> = {}, version = '1.1'): HeadParser {
  let head = `${method} ${target} HTTP/${version}\r\n`
  if (host !== null) head += `Host: ${host}\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return parse(head + '\r\n')
}

function router (routes: unknown[], pools: Record<string, unknown> = {}): Router {
  const config = resolveConfig({ listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:9001' }], pools, routes })
  const state = SharedState.create(0)
  const table = buildUpstreamTable(config, state, null)
  const r = compileRouter(config, buildPools(config, table, state, null), state)
  assert.ok(r !== null)
  return r
}

function matched (r: Router, p: HeadParser): string | null {
  const out: RouteLookup = { route: null, path: '' }
  r.match(p, out)
  const scan: RouteLookup = { route: null, path: '' }
  r.matchByScan(p, scan)
  assert.equal(out.route?.name ?? null, scan.route?.name ?? null, 'the index agrees with a scan')
  return out.route?.name ?? null
}

describe('routing: the matcher', () => {
  const r = router([
    { name: 'exact', match: { host: ['api.example.com'] } },
    { name: 'wild', match: { host: ['*.example.com'] } },
    { name: 'static', match: { pathPrefix: '/static' } },
    { name: 'slash', match: { pathPrefix: '/docs/' } },
    { name: 'login', match: { path: '/login', methods: ['POST'] } },
    { name: 'regex', match: { pathRegex: '^/v[0-9]+/' } },
    { name: 'beta', match: { headers: { 'x-beta': '1' } } },
    { name: 'canary', match: { headers: { cookie: { regex: 'canary=yes' } } } },
    { name: 'no-auth', match: { pathPrefix: '/private', headers: { authorization: { present: false } } } },
  ])
  const cases: Array<[string, HeadParser, string | null]> = [
    ['exact host', request('GET', '/', 'api.example.com'), 'exact'],
    ['host is case-insensitive, port ignored', request('GET', '/', 'API.Example.COM:8443'), 'exact'],
    ['trailing dot', request('GET', '/', 'api.example.com.'), 'exact'],
    ['absolute-form authority wins over Host', request('GET', 'http://api.example.com/x', 'other.test'), 'exact'],
    ['wildcard: one label', request('GET', '/', 'www.example.com'), 'wild'],
    ['wildcard: not the bare domain', request('GET', '/', 'example.com'), null],
    ['wildcard: not two labels', request('GET', '/', 'a.b.example.com'), null],
    ['prefix itself', request('GET', '/static', 'x.test'), 'static'],
    ['prefix and a segment', request('GET', '/static/app.js', 'x.test'), 'static'],
    ['prefix and a query', request('GET', '/static?v=1', 'x.test'), 'static'],
    ['not a segment boundary', request('GET', '/staticx', 'x.test'), null],
    ['percent-decoded before matching', request('GET', '/%73tatic/a', 'x.test'), 'static'],
    ['dot segments removed', request('GET', '/a/../static/b', 'x.test'), 'static'],
    ['path parameters dropped', request('GET', '/static;jsessionid=1/a', 'x.test'), 'static'],
    ['double slashes merged', request('GET', '//static//a', 'x.test'), 'static'],
    ['prefix ending in /: needs it', request('GET', '/docs', 'x.test'), null],
    ['prefix ending in /', request('GET', '/docs/a', 'x.test'), 'slash'],
    ['exact path and method', request('POST', '/login', 'x.test'), 'login'],
    ['exact path, other method', request('GET', '/login', 'x.test'), null],
    ['exact path, not a prefix', request('POST', '/login/x', 'x.test'), null],
    ['regex', request('GET', '/v2/items', 'x.test'), 'regex'],
    ['regex sees the normalised path', request('GET', '/x/../v3/items', 'x.test'), 'regex'],
    ['header equals', request('GET', '/', 'x.test', { 'X-Beta': '1' }), 'beta'],
    ['header differs', request('GET', '/', 'x.test', { 'X-Beta': '2' }), null],
    ['header regex', request('GET', '/', 'x.test', { Cookie: 'a=b; canary=yes' }), 'canary'],
    ['header absent as required', request('GET', '/private/a', 'x.test'), 'no-auth'],
    ['header present where it must not be', request('GET', '/private/a', 'x.test', { Authorization: 'Bearer x' }), null],
    ['first match wins (host before path)', request('GET', '/static/a', 'api.example.com'), 'exact'],
    ['HTTP/1.0 without Host: only host-less routes', request('GET', '/static/a', null, {}, '1.0'), 'static'],
    ['HTTP/1.0 without Host, nothing else', request('GET', '/', null, {}, '1.0'), null],
    ['asterisk-form', request('OPTIONS', '*', 'x.test'), null],
    ['IPv6 literal host', request('GET', '/static', '[::1]:80'), 'static'],
  ]
  for (const [what, p, expected] of cases) {
    test(what, () => { assert.equal(matched(r, p), expected) })
  }

  test('segmentPrefix', () => {
    assert.equal(segmentPrefix('/api', '/api'), true)
    assert.equal(segmentPrefix('/api/x', '/api'), true)
    assert.equal(segmentPrefix('/apix', '/api'), false)
    assert.equal(segmentPrefix('/', '/'), true)
    assert.equal(segmentPrefix('/anything', '/'), true)
  })

  test('property: the host index and a scan of every route always agree', () => {
    const hosts = ['api.example.com', 'www.example.com', 'example.com', 'a.b.example.com', 'x.test', 'Y.TEST', '']
    const paths = ['/', '/static', '/static/a', '/staticx', '/docs/', '/login', '/v1/x', '/a/../static', '/%2e%2e/x', '/private']
    fc.assert(fc.property(fc.constantFrom(...hosts), fc.constantFrom(...paths), fc.constantFrom('GET', 'POST'), fc.boolean(), (host, path, method, beta) => {
      const p = request(method, path, host === '' ? null : host, beta ? { 'x-beta': '1' } : {}, host === '' ? '1.0' : '1.1')
      matched(r, p) // asserts agreement
    }), { numRuns: 300 })
  })
})

describe('routing: forwarded targets', () => {
  const r = router([
    { name: 'strip', match: { pathPrefix: '/api' }, stripPathPrefix: true },
    { name: 'strip-slash', match: { pathPrefix: '/svc/' }, stripPathPrefix: true },
    { name: 'rewrite', match: { pathPrefix: '/old' }, rewritePath: { regex: '^/old(/.*)?$', replace: '/new$1' } },
    { name: 'empty', match: { pathPrefix: '/gone' }, rewritePath: { regex: '.*', replace: '' } },
    { name: 'both', match: { pathPrefix: '/v1' }, stripPathPrefix: true, rewritePath: { regex: '^/(\\w+)', replace: '/items/$1' } },
  ])
  const cases: Array<[string, string]> = [
    ['/api/users?x=1', '/users?x=1'],
    ['/api', '/'],
    ['/api?q', '/?q'],
    ['/api/', '/'],
    ['/svc/a', '/a'],
    ['/svc/', '/'],
    ['/old/page?z', '/new/page?z'],
    ['/old', '/new'],
    ['/gone/x?keep=1', '/?keep=1'],
    ['/v1/shoes', '/items/shoes'],
    ['/api/a%20b', '/a%20b'],
    ['/api/%3Fnot-a-query', '/%3Fnot-a-query'],
    ['/api/caf%C3%A9', '/caf%C3%A9'],
    ['/api/100%25', '/100%25'],
  ]
  for (const [target, expected] of cases) {
    test(`${target} -> ${expected}`, () => {
      const p = request('GET', target, 'x.test')
      const out: RouteLookup = { route: null, path: '' }
      r.match(p, out)
      assert.ok(out.route !== null)
      assert.equal(out.route.forwardTarget(out.path, p.target()), expected)
    })
  }

  test('encodePath: anything that is not a path character is encoded, UTF-8', () => {
    assert.equal(encodePath('/a b/ü?#'), '/a%20b/%C3%BC%3F%23')
    assert.equal(encodePath("/ok-._~!$&'()*+,;=:@"), "/ok-._~!$&'()*+,;=:@")
  })
})

describe('routing: config errors with their JSON path', () => {
  const base = { listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:9001' }] }
  const errorsOf = (raw: Record<string, unknown>): string[] => {
    try {
      resolveConfig(raw)
    } catch (err) {
      assert.ok(err instanceof ConfigError)
      return [...err.errors]
    }
    return []
  }
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['unknown pool', { ...base, routes: [{ match: {}, pool: 'nope' }] }, /^\/routes\/0\/pool: unknown pool "nope"/],
    ['pools.default with top-level upstreams', { ...base, pools: { default: { upstreams: [{ address: '127.0.0.1:9002' }] } } }, /^\/pools\/default: duplicate pool "default"/],
    ['invalid path regex', { ...base, routes: [{ match: { pathRegex: '(' } }] }, /^\/routes\/0\/match\/pathRegex: invalid regular expression: .*Unterminated group/],
    ['invalid rewrite regex', { ...base, routes: [{ match: {}, rewritePath: { regex: '[', replace: '' } }] }, /^\/routes\/0\/rewritePath\/regex: invalid regular expression/],
    ['invalid header regex', { ...base, routes: [{ match: { headers: { 'x-a': { regex: '*' } } } }] }, /^\/routes\/0\/match\/headers\/x-a\/regex: invalid regular expression/],
    ['no action, no default pool', { listen: '127.0.0.1:0', pools: { web: { upstreams: [{ address: '127.0.0.1:9002' }] } }, routes: [{ match: {} }] }, /^\/routes\/0: no "pool", "redirect" or "respond", and there is no pool "default"/],
    ['stripPathPrefix without pathPrefix', { ...base, routes: [{ match: { path: '/a' }, stripPathPrefix: true }] }, /^\/routes\/0\/stripPathPrefix: needs \/routes\/0\/match\/pathPrefix/],
    ['forbidden request header in set', { ...base, routes: [{ match: {}, requestHeaders: { set: { 'Content-Length': '1' } } }] }, /^\/routes\/0\/requestHeaders\/set\/Content-Length: "Content-Length" cannot be changed/],
    ['forbidden Host in add', { ...base, routes: [{ match: {}, requestHeaders: { add: { host: 'x' } } }] }, /^\/routes\/0\/requestHeaders\/add\/host:/],
    ['forbidden response header in remove', { ...base, routes: [{ match: {}, responseHeaders: { remove: ['transfer-encoding'] } }] }, /^\/routes\/0\/responseHeaders\/remove\/0:/],
    ['unknown variable', { ...base, routes: [{ match: {}, requestHeaders: { set: { 'x-ip': '{clientip}' } } }] }, /^\/routes\/0\/requestHeaders\/set\/x-ip: unknown variable \{clientip\}/],
    ['two actions', { ...base, routes: [{ match: {}, respond: { status: 403 }, redirect: { location: '/x' } }] }, /^\/routes\/0: only one of/],
    ['duplicate route names', { ...base, routes: [{ name: 'a', match: {} }, { name: 'a', match: {} }] }, /^\/routes\/1\/name: duplicate of \/routes\/0\/name/],
    ['bad pool name', { ...base, pools: { 'Bad Name': { upstreams: [{ address: '127.0.0.1:9002' }] } } }, /^\/pools: /],
    ['no pool at all', { listen: '127.0.0.1:0' }, /^\/: needs "upstreams"/],
    ['duplicate address within a pool', { ...base, pools: { web: { upstreams: [{ address: '127.0.0.1:9002' }, { address: '127.0.0.1:9002' }] } } }, /^\/pools\/web\/upstreams\/1\/address: duplicate/],
  ]
  for (const [what, raw, expected] of cases) {
    test(what, () => {
      const errors = errorsOf(raw)
      assert.ok(errors.some((e) => expected.test(e)), `${expected} in ${JSON.stringify(errors)}`)
    })
  }

  test('an address in two pools is allowed (two upstreams)', () => {
    const config = resolveConfig({ ...base, pools: { web: { upstreams: [{ address: '127.0.0.1:9001' }] } } })
    const state = SharedState.create(0)
    const table = buildUpstreamTable(config, state, null)
    assert.equal(table.length, 2)
    assert.notEqual(table[0].slot, table[1].slot)
    assert.notEqual(table[0].poolSlot, table[1].poolSlot)
  })

  test('duplicate pool names in the file text', () => {
    assert.deepEqual(duplicateKeysIn('{"pools": {"a": {"x": {"a": 1}}, "b": {}, "a": {}}, "a": 1}', 'pools'), ['a'])
    assert.deepEqual(duplicateKeysIn('{"upstreams": [{"a": 1}], "pools": {"a\\"b": {}}}', 'pools'), [])
  })
})

describe('routing: shadowed routes', () => {
  test('a route covered by an earlier host + shorter prefix is reported; others are not', () => {
    const warnings = shadowedRoutes([
      { name: 'api', match: { host: ['a.test'], pathPrefix: '/api' }, pool: 'default' },
      { name: 'users', match: { host: ['a.test'], pathPrefix: '/api/users' }, pool: 'default' },
      { name: 'other-host', match: { host: ['b.test'], pathPrefix: '/api/users' }, pool: 'default' },
      { name: 'apix', match: { host: ['a.test'], pathPrefix: '/apix' }, pool: 'default' },
      { name: 'guarded', match: { pathPrefix: '/x', methods: ['GET'] }, pool: 'default' },
      { name: 'after-guarded', match: { pathPrefix: '/x/y' }, pool: 'default' },
      { name: 'all', match: {}, pool: 'default' },
      { name: 'never', match: { path: '/z' }, pool: 'default' },
    ])
    assert.equal(warnings.length, 2, warnings.join('\n'))
    assert.match(warnings[0], /^\/routes\/1 \("users"\) can never match: \/routes\/0 \("api"\)/)
    assert.match(warnings[1], /^\/routes\/7 \("never"\) can never match: \/routes\/6 \("all"\)/)
  })
})

describe('route templates', () => {
  test('{scheme} is how the client reached the listener: https on TLS, http otherwise', () => {
    const t = new Template('{scheme}://{host}{path}{query}')
    const p = parse('GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8443\r\n\r\n')
    assert.equal(t.render({ clientIp: '127.0.0.1', parser: p, requestId: '', proto: 'https' }), 'https://example.com/a/b?x=1')
    assert.equal(t.render({ clientIp: '127.0.0.1', parser: p, requestId: '', proto: 'http' }), 'http://example.com/a/b?x=1')
    assert.equal(t.render({ clientIp: '127.0.0.1', parser: p, requestId: '' }), 'http://example.com/a/b?x=1')
  })
})
