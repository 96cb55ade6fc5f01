/**
 * The request firewall end to end, through the proxy, in both modes:
 * configured rules (path prefix, header, method, an allow before a deny, a log
 * rule that lets through) and the built-in set (path traversal in its encoded
 * spellings, NUL, SQL and script injection) answer 403 and never reach the
 * upstream, while ordinary URLs that merely look suspicious (SQL words,
 * apostrophes, dates, '--' slugs, dotted file names) pass unchanged. The
 * per-rule hit counters in shared state must match what was sent.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, httpRequest, rawExchange, type EchoReply } from '../helpers'
import { H_FIREWALL_BLOCKED } from '../../src/shared/layout'

// Configured rules, in order; their indexes are their positions. The built-in
// rules follow them (src/firewall/builtin.ts BUILTIN_RULES order).
const RULES = [
  { name: 'allow-admin-health', action: 'allow', path: { exact: '/admin/health' } },
  { name: 'deny-admin', action: 'deny', path: { prefix: '/admin' } },
  { name: 'deny-bad-bot', action: 'deny', header: { name: 'User-Agent', regex: 'BadBot' } },
  { name: 'deny-debug-header', action: 'deny', header: { name: 'X-Debug-Override' } },
  { name: 'deny-delete-trace', action: 'deny', methods: ['DELETE', 'TRACE'] },
  { name: 'log-legacy', action: 'log', path: { prefix: '/legacy' } },
  { name: 'deny-secret-host', action: 'deny', header: { name: 'Host', equals: 'Secret.Example' } },
] as const
const R = {
  allowHealth: 0,
  denyAdmin: 1,
  denyBot: 2,
  denyDebug: 3,
  denyMethods: 4,
  logLegacy: 5,
  denySecretHost: 6,
  traversal: 7,
  nul: 8,
  sql: 9,
  script: 10,
} as const
const RULE_COUNT = 11

for (const mode of MODES) {
  describe(`firewall through the proxy (${mode.name})`, () => {
    let upstream: Awaited<ReturnType<typeof startEchoUpstream>>
    let run: RunningLb
    /** Every target the upstream received. */
    const seen: string[] = []
    /** Hits each rule should have counted, kept by the tests as they send. */
    const expectedHits = new Array<number>(RULE_COUNT).fill(0)
    let expectedBlocked = 0

    before(async () => {
      upstream = await startEchoUpstream('origin', (req) => { seen.push(req.url ?? ''); return false })
      run = await startLb({
        upstreams: [{ address: upstream.address }],
        firewall: { builtin: true, rules: RULES },
      }, mode.workers)
    })

    after(async () => {
      await run?.stop()
      await upstream?.close()
    })

    function hits (): number[] {
      return Array.from({ length: RULE_COUNT }, (_, i) => run.lb.state.firewallHits(i))
    }

    /** Send, expect 403, and check the upstream did not see it. */
    async function expectDenied (path: string, rule: number, opts: http.RequestOptions = {}): Promise<void> {
      const before = upstream.count
      const reply = await httpRequest(run.port, { path, ...opts })
      assert.equal(reply.status, 403, `${opts.method ?? 'GET'} ${path}: ${reply.status} ${reply.body}`)
      assert.equal(upstream.count, before, `${path} must not reach the upstream`)
      assert.ok(!seen.includes(path), `${path} must not reach the upstream`)
      expectedHits[rule]++
      expectedBlocked++
    }

    /** Send, expect 200 from the upstream with the target unchanged. */
    async function expectPassed (path: string, opts: http.RequestOptions = {}): Promise<void> {
      const before = upstream.count
      const reply = await httpRequest(run.port, { path, ...opts })
      assert.equal(reply.status, 200, `${opts.method ?? 'GET'} ${path}: ${reply.status} ${reply.body}`)
      const echo = JSON.parse(reply.body) as EchoReply
      assert.equal(echo.url, path, 'the upstream got the target byte for byte')
      assert.equal(upstream.count, before + 1)
    }

    test('a deny rule by path prefix answers 403; the upstream never sees it', async () => {
      await expectDenied('/admin', R.denyAdmin)
      await expectDenied('/admin/users', R.denyAdmin)
      await expectDenied('/admin/users?id=7', R.denyAdmin)
      // matched after decoding and normalising: other spellings of the same path are the same path
      await expectDenied('/%61dmin/users', R.denyAdmin)
      await expectDenied('//admin/users', R.denyAdmin)
      await expectDenied('/public/../admin/users', R.denyAdmin) // configured rules come before the built-in traversal rule
      // absolute-form (RFC 9112 §3.2.2) is matched on its path
      const before = upstream.count
      const absolute = await rawExchange(run.port, 'GET http://example.com/admin/users HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n')
      assert.match(absolute.text, /^HTTP\/1\.1 403 /, absolute.text)
      assert.equal(upstream.count, before)
      expectedHits[R.denyAdmin]++
      expectedBlocked++
      await expectPassed('/public/admin')
      await expectPassed('/users/admin')
      // path parameters do not hide a path (Tomcat and Jetty route /x/..;/admin to /admin)
      await expectDenied('/;/admin', R.denyAdmin)
      await expectDenied('/x/..;/admin', R.denyAdmin)
      await expectDenied('/admin;jsessionid=1', R.denyAdmin)
    })

    test('a host rule sees the host the request is for: any case, any port, a trailing dot, or absolute-form', async () => {
      await expectDenied('/s/1', R.denySecretHost, { headers: { host: 'secret.example' } })
      await expectDenied('/s/2', R.denySecretHost, { headers: { host: 'SECRET.EXAMPLE:8080' } })
      await expectDenied('/s/3', R.denySecretHost, { headers: { host: 'secret.example.' } })
      const before = upstream.count
      const absolute = await rawExchange(run.port, 'GET http://Secret.Example.:80/s/4 HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n')
      assert.match(absolute.text, /^HTTP\/1\.1 403 /, absolute.text)
      assert.equal(upstream.count, before)
      expectedHits[R.denySecretHost]++
      expectedBlocked++
      await expectPassed('/s/5', { headers: { host: 'public.example' } })
      await expectPassed('/s/6', { headers: { host: 'secret.example.org' } })
    })

    test('a header rule: a regex on User-Agent, and a header denied whenever present', async () => {
      await expectDenied('/h/1', R.denyBot, { headers: { 'user-agent': 'Mozilla/5.0 (compatible; BadBot/2.1)' } })
      await expectPassed('/h/2', { headers: { 'user-agent': 'Mozilla/5.0 (compatible; GoodBot/1.0)' } })
      await expectPassed('/h/3')
      await expectDenied('/h/4', R.denyDebug, { headers: { 'x-debug-override': '1' } })
      await expectDenied('/h/5', R.denyDebug, { headers: { 'X-DEBUG-OVERRIDE': '' } }) // names are case-insensitive; present even when empty
      await expectPassed('/h/6', { headers: { 'x-debug': '1' } })
    })

    test('a method rule: DELETE and TRACE are denied on every path, other methods pass', async () => {
      await expectDenied('/items/1', R.denyMethods, { method: 'DELETE' })
      await expectDenied('/items/2', R.denyMethods, { method: 'TRACE' })
      await expectPassed('/items/3', { method: 'GET' })
      await expectPassed('/items/4', { method: 'PUT', headers: { 'content-length': '0' } })
      // methods are matched ASCII case-insensitively (src/firewall/rules.ts)
      const before = upstream.count
      const reply = await rawExchange(run.port, 'delete /items/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      assert.match(reply.text, /^HTTP\/1\.1 403 /, reply.text)
      assert.equal(upstream.count, before)
      expectedHits[R.denyMethods]++
      expectedBlocked++
    })

    test('an allow rule before a deny lets its path through (and skips every later rule, the built-in set included)', async () => {
      await expectPassed('/admin/health')
      expectedHits[R.allowHealth]++
      await expectPassed('/admin/health?probe=%3Cscript%3Ealert(1)%3C/script%3E')
      expectedHits[R.allowHealth]++
      await expectDenied('/admin/health/details', R.denyAdmin) // exact, not a prefix
    })

    test('a log rule lets the request through and counts a hit', async () => {
      const before = run.lb.state.firewallHits(R.logLegacy)
      await expectPassed('/legacy/page')
      await expectPassed('/legacy/other?x=1')
      expectedHits[R.logLegacy] += 2
      assert.equal(run.lb.state.firewallHits(R.logLegacy) - before, 2)
    })

    test('the built-in set blocks encoded traversal, NUL, SQL and script injection (403, never upstream)', async () => {
      const attacks: Array<[string, number]> = [
        ['/a/%2e%2e/%2e%2e/etc/passwd', R.traversal],
        ['/static/%252e%252e%252f%252e%252e%252fetc/passwd', R.traversal], // double encoding: %25 -> %, %2e -> .
        ['/static/..%2f..%2fetc/passwd', R.traversal],
        ['/static/%2E%2e/%2E%2e/etc/passwd', R.traversal],
        ['/download?file=../../etc/passwd', R.traversal],
        ['/a/%c0%ae%c0%ae/etc/passwd', R.traversal], // overlong UTF-8 for '.'
        ['/files/report.pdf%00.jpg', R.nul],
        ['/files?name=a%00b', R.nul],
        ["/search?q=1'%20or%20'1'='1", R.sql],
        ["/search?q=1'+or+'1'%3D'1", R.sql],
        ['/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E', R.script],
        ['/search?q=%3CSCRIPT%3Ealert(1)%3C/SCRIPT%3E', R.script],
      ]
      for (const [path, rule] of attacks) {
        const before = run.lb.state.firewallHits(rule)
        await expectDenied(path, rule)
        assert.equal(run.lb.state.firewallHits(rule) - before, 1, `${path}: counted on rule ${rule}`)
      }
    })

    test('15 ordinary URLs that merely look suspicious pass unchanged and reach the upstream', async () => {
      const ordinary = [
        '/search?q=select+a+plan',
        '/search?q=union+jobs+near+me',
        '/search?q=selection+of+reunion+photos',
        '/search?q=drop+shipping',
        '/search?q=cats+or+dogs',
        "/people?name=O'Brien",
        "/search?q=rock+'n'+roll",
        "/search?q=it's+a+select+few",
        '/events/2024-01-31',
        '/archive?from=2020-01-01&to=2021-12-31&at=12:30',
        '/posts/my--first--post',
        '/files/report.v2.final.pdf',
        '/files/a..b.txt',
        '/.well-known/security.txt',
        '/search?q=JavaScript:+The+Good+Parts&sort=update&filter=price%3E10',
      ]
      assert.equal(ordinary.length, 15)
      const before = hits()
      const blockedBefore = run.lb.state.header(H_FIREWALL_BLOCKED)
      for (const path of ordinary) await expectPassed(path)
      assert.deepEqual(hits(), before, 'no rule counted a hit')
      assert.equal(run.lb.state.header(H_FIREWALL_BLOCKED), blockedBefore)
    })

    test('the per-rule hit counters in shared state match the requests sent', () => {
      const names = [...RULES.map((r) => r.name), 'builtin:path-traversal', 'builtin:nul-byte', 'builtin:sql-injection', 'builtin:script-injection']
      const actual = Object.fromEntries(hits().map((n, i) => [names[i], n]))
      const expected = Object.fromEntries(expectedHits.map((n, i) => [names[i], n]))
      assert.deepEqual(actual, expected)
      assert.equal(run.lb.state.header(H_FIREWALL_BLOCKED), expectedBlocked, 'H_FIREWALL_BLOCKED: every 403')
      assert.equal(expectedBlocked, expectedHits.filter((_, i) => i !== R.allowHealth && i !== R.logLegacy).reduce((a, b) => a + b, 0))
    })
  })
}
