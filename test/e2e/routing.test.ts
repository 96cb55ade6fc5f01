/**
 * Routing end to end, in every mode (sequential and workers=2): host routes
 * to two pools (each with two upstreams: exact round robin within each),
 * wildcard hosts, path prefixes with and without stripping, a regex rewrite
 * with setHost, header edits both ways, redirect and respond, a per-route
 * rate limit independent of the global one, cache: false, an unknown host to
 * pool "default" and to 404 without it, and a hot reload that moves a route
 * to another pool under load with no failed request.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, httpRequest, rawExchange, waitFor, type TestServer, type EchoReply } from '../helpers'
import { resolveConfig } from '../../src/config/load'
import { startAdmin } from '../../src/admin/server'

type Upstream = TestServer & { server: import('node:http').Server }

/** Upstreams that mark /cached and /nocache responses cacheable. */
async function upstream (name: string): Promise<Upstream> {
  return await startEchoUpstream(name, (req, res) => {
    if (req.url === '/slow') { setTimeout(() => res.end('late'), 1500); return true }
    if (req.url !== '/cached' && req.url !== '/nocache') return false
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'x-upstream': name, 'content-length': Buffer.byteLength(name) })
    res.end(name)
    return true
  })
}

async function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, unknown>, body: string, echo: EchoReply | null }> {
  const reply = await httpRequest(port, { path, headers })
  let echo: EchoReply | null = null
  try { echo = JSON.parse(reply.body) as EchoReply } catch { /* not an echo */ }
  return { ...reply, headers: reply.headers as Record<string, unknown>, echo }
}

function routes (): unknown[] {
  return [
    { name: 'api-host', match: { host: ['api.test'] }, pool: 'api' },
    { name: 'wild', match: { host: ['*.wild.test'] }, pool: 'web' },
    {
      name: 'api-prefix',
      match: { pathPrefix: '/api' },
      pool: 'api',
      stripPathPrefix: true,
      requestHeaders: { set: { 'x-client': '{client_ip}', 'x-seen-path': '{path}{query}' }, remove: ['x-secret'] },
      responseHeaders: { set: { 'x-frame-options': 'DENY' }, remove: ['x-upstream'] },
    },
    { name: 'keep-prefix', match: { pathPrefix: '/keep/' }, pool: 'web' },
    { name: 'rewrite', match: { pathRegex: '^/v1/' }, pool: 'web', rewritePath: { regex: '^/v1/(.*)$', replace: '/v2/$1' }, setHost: 'internal.test' },
    { name: 'old', match: { path: '/old' }, redirect: { location: 'https://new.test{path}{query}', status: 301 } },
    { name: 'admin', match: { pathPrefix: '/admin' }, respond: { status: 403, body: 'denied\n' } },
    // a day: fixed windows are aligned to the clock, and a minute window could roll over mid-test
    { name: 'login', match: { path: '/login', methods: ['GET'] }, pool: 'web', rateLimit: { maxRequests: 2, windowMs: 86_400_000 } },
    { name: 'nocache', match: { path: '/nocache' }, pool: 'web', cache: false },
    { name: 'canary', match: { path: '/cached', headers: { 'x-canary': '1' } }, pool: 'api' },
    { name: 'cached', match: { path: '/cached' }, pool: 'web' },
    { name: 'slow', match: { path: '/slow' }, pool: 'web', timeouts: { responseMs: 300 }, retries: 0 },
    { name: 'upload', match: { path: '/upload' }, pool: 'web', maxBodyBytes: 10 },
    { name: 'fw-open', match: { pathPrefix: '/fw/open' }, pool: 'web', firewall: false },
  ]
}

for (const mode of MODES) {
  describe(`routing (${mode.name})`, () => {
    let a1: Upstream, a2: Upstream, b1: Upstream, b2: Upstream, d1: Upstream
    let running: RunningLb
    let config: Record<string, unknown>

    before(async () => {
      [a1, a2, b1, b2, d1] = await Promise.all(['a1', 'a2', 'b1', 'b2', 'd1'].map(upstream))
      config = {
        upstreams: [{ address: d1.address }],
        pools: {
          web: { upstreams: [{ address: a1.address }, { address: a2.address }] },
          api: { upstreams: [{ address: b1.address }, { address: b2.address }] },
        },
        routes: routes(),
        rateLimit: { maxRequests: 10_000 },
        cache: { maxBytes: 1 << 20 },
        firewall: { rules: [{ action: 'deny', path: { prefix: '/fw' } }] },
      }
      running = await startLb(config, mode.workers)
    })

    after(async () => {
      await running.stop()
      await Promise.all([a1, a2, b1, b2, d1].map(async (u) => await u.close()))
    })

    test('host routing: each pool round-robins exactly over its own two upstreams', async () => {
      const api: string[] = []
      const web: string[] = []
      for (let i = 0; i < 6; i++) {
        api.push((await get(running.port, '/x', { host: 'api.test' })).echo?.name ?? '?')
        web.push((await get(running.port, '/x', { host: 'a.wild.test' })).echo?.name ?? '?')
      }
      const expected: Array<[string[], string[]]> = [[api, ['b1', 'b2']], [web, ['a1', 'a2']]]
      for (const [names, pair] of expected) {
        assert.ok(names.every((n) => pair.includes(n)), names.join())
        for (let i = 1; i < names.length; i++) assert.notEqual(names[i], names[i - 1], `alternates: ${names.join()}`)
      }
    })

    test('wildcard host covers exactly one label; an unknown host goes to pool default', async () => {
      assert.match((await get(running.port, '/x', { host: 'Z.WILD.test:8080' })).echo?.name ?? '', /^a[12]$/)
      assert.equal((await get(running.port, '/x', { host: 'wild.test' })).echo?.name, 'd1')
      assert.equal((await get(running.port, '/x', { host: 'a.b.wild.test' })).echo?.name, 'd1')
      assert.equal((await get(running.port, '/x', { host: 'unknown.test' })).echo?.name, 'd1')
    })

    test('path prefix on segment boundaries, with and without stripping', async () => {
      const stripped = await get(running.port, '/api/users?x=1')
      assert.match(stripped.echo?.name ?? '', /^b[12]$/)
      assert.equal(stripped.echo?.url, '/users?x=1')
      assert.equal((await get(running.port, '/api')).echo?.url, '/')
      assert.equal((await get(running.port, '/api?q=1')).echo?.url, '/?q=1')
      // normalised as the firewall does: /x/../api/a is /api/a
      assert.equal((await get(running.port, '/x/../api/a')).echo?.url, '/a')
      const apix = await get(running.port, '/apix')
      assert.equal(apix.echo?.name, 'd1')
      assert.equal(apix.echo?.url, '/apix')
      const kept = await get(running.port, '/keep/a/b?c')
      assert.match(kept.echo?.name ?? '', /^a[12]$/)
      assert.equal(kept.echo?.url, '/keep/a/b?c')
    })

    test('regex rewrite keeps the query; setHost', async () => {
      const r = await get(running.port, '/v1/items/7?q=1')
      assert.equal(r.echo?.url, '/v2/items/7?q=1')
      assert.equal(r.echo?.headers.host, 'internal.test')
    })

    test('header set and remove, both ways', async () => {
      const r = await get(running.port, '/api/h?z=2', { 'x-secret': 'token', 'x-client': 'forged' })
      assert.equal(r.status, 200)
      assert.equal(r.echo?.headers['x-secret'], undefined)
      assert.equal(r.echo?.headers['x-client'], '127.0.0.1')
      assert.equal(r.echo?.headers['x-seen-path'], '/api/h?z=2')
      assert.equal(r.headers['x-frame-options'], 'DENY')
      assert.equal(r.headers['x-upstream'], undefined)
      // another route leaves both alone
      const other = await get(running.port, '/keep/h', { 'x-secret': 'token' })
      assert.equal(other.echo?.headers['x-secret'], 'token')
      assert.ok(other.headers['x-upstream'] !== undefined)
    })

    test('redirect and respond are answered without an upstream, keep-alive intact', async () => {
      const before = d1.count + a1.count + a2.count + b1.count + b2.count
      const moved = await get(running.port, '/old?a=1')
      assert.equal(moved.status, 301)
      assert.equal(moved.headers.location, 'https://new.test/old?a=1')
      const denied = await get(running.port, '/admin/panel')
      assert.equal(denied.status, 403)
      assert.equal(denied.body, 'denied\n')
      assert.equal(d1.count + a1.count + a2.count + b1.count + b2.count, before)
      // both on one connection, then a forwarded request
      const raw = await rawExchange(running.port, 'GET /old HTTP/1.1\r\nHost: x\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\nGET /keep/z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      assert.match(raw.text, /^HTTP\/1\.1 301 [^]*Location: https:\/\/new\.test\/old\r\n[^]*HTTP\/1\.1 403 [^]*denied\n[^]*HTTP\/1\.1 200 /)
    })

    test('a route rate limit has its own counters, independent of the global one', async () => {
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) statuses.push((await get(running.port, '/login')).status)
      assert.deepEqual(statuses, [200, 200, 429])
      const limited = await get(running.port, '/login')
      assert.equal(limited.status, 429)
      assert.ok(limited.headers['retry-after'] !== undefined)
      assert.match(String(limited.headers['ratelimit-policy']), /;q=2;/, 'the route\'s policy, not the global one')
      // the global limit (10,000) is far from spent: other routes still pass
      assert.equal((await get(running.port, '/keep/after-limit')).status, 200)
    })

    test('cache: false bypasses the cache; another route caches', async () => {
      const web = (): number => a1.count + a2.count
      let mark = web()
      await get(running.port, '/cached')
      const hit = await get(running.port, '/cached')
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(web(), mark + 1)
      // the same URL on a route chosen by a header is never answered from the other pool's entry
      const canary = await get(running.port, '/cached', { 'x-canary': '1' })
      assert.match(canary.body, /^b[12]$/)
      assert.notEqual(canary.headers['x-cache'], 'HIT')
      mark = web()
      await get(running.port, '/nocache')
      const second = await get(running.port, '/nocache')
      assert.equal(second.headers['x-cache'], undefined)
      assert.equal(web(), mark + 2)
    })

    test('per-route timeouts, maxBodyBytes and firewall: false', async () => {
      const started = Date.now()
      const slow = await get(running.port, '/slow')
      assert.equal(slow.status, 504)
      assert.ok(Date.now() - started < 1200, `the route's 300 ms, not the global 5 s (${Date.now() - started} ms)`)
      const big = await httpRequest(running.port, { path: '/upload', method: 'POST', body: 'x'.repeat(20) })
      assert.equal(big.status, 413)
      const small = await httpRequest(running.port, { path: '/upload', method: 'POST', body: 'x'.repeat(10) })
      assert.equal(small.status, 200)
      assert.equal((await get(running.port, '/fw/closed')).status, 403)
      assert.equal((await get(running.port, '/fw/open/x')).status, 200)
    })

    test('status lists pools and route hits', async () => {
      const status = running.lb.routeStatus()
      const names = status.map((r) => r.name)
      assert.deepEqual(names.slice(0, 3), ['api-host', 'wild', 'api-prefix'])
      assert.ok((status.find((r) => r.name === 'old')?.hits ?? 0) >= 2)
      assert.deepEqual(running.lb.upstreamStatus().map((u) => u.pool).sort(), ['api', 'api', 'default', 'web', 'web'])
    })

    test('admin: status groups upstreams by pool and lists routes; /metrics; drain by pool/address', async () => {
      const admin = await startAdmin(running.lb, { listen: '127.0.0.1:0' })
      try {
        const status = JSON.parse((await httpRequest(admin.address.port, { path: '/api/status' })).body) as {
          pools: Array<{ name: string, upstreams: string[], requests: number }>
          routes: Array<{ name: string, target: string, hits: number }>
        }
        assert.deepEqual(status.pools.map((p) => p.name), ['default', 'web', 'api'])
        assert.deepEqual(status.pools[1].upstreams, [`web/${a1.address}`, `web/${a2.address}`])
        assert.ok(status.pools[2].requests > 0)
        assert.equal(status.routes[5].name, 'old')
        assert.equal(status.routes[5].target, 'redirect')
        assert.ok(status.routes[0].hits >= 6, 'api-host hits')
        const metrics = (await httpRequest(admin.address.port, { path: '/metrics' })).body
        assert.match(metrics, /^switchyard_route_requests_total\{route="api-host"\} \d+$/m)
        assert.match(metrics, /^switchyard_pool_requests_total\{pool="web"\} [1-9]\d*$/m)
        assert.match(metrics, new RegExp(`^switchyard_upstream_requests_total\\{upstream="${b1.address}",pool="api"\\} [1-9]`, 'm'))

        // drain a1 by pool/address: the web pool then sends everything to a2
        const drained = await httpRequest(admin.address.port, { path: `/api/upstreams/web/${a1.address}/drain`, method: 'POST' })
        assert.equal(drained.status, 200, drained.body)
        const body = JSON.parse(drained.body) as { pool: string, address: string, draining: boolean }
        assert.deepEqual({ pool: body.pool, address: body.address, draining: body.draining }, { pool: 'web', address: a1.address, draining: true })
        for (let i = 0; i < 4; i++) assert.equal((await get(running.port, '/keep/d')).echo?.name, 'a2')
        const enabled = await httpRequest(admin.address.port, { path: `/api/upstreams/${encodeURIComponent(`web/${a1.address}`)}/enable`, method: 'POST' })
        assert.equal(enabled.status, 200, enabled.body)
        assert.equal((await httpRequest(admin.address.port, { path: '/api/upstreams/nopool/1.2.3.4:5/drain', method: 'POST' })).status, 404)
      } finally {
        await admin.close()
      }
    })

    test('hot reload moves a route to another pool under load, no failed request', async () => {
      const failures: string[] = []
      const seen: string[] = []
      let stop = false
      const loop = async (): Promise<void> => {
        while (!stop) {
          try {
            const r = await get(running.port, '/keep/loop')
            if (r.status === 200) seen.push(r.echo?.name ?? '?')
            else failures.push(`status ${r.status}: ${r.body}`)
          } catch (err) {
            failures.push((err as Error).message)
          }
        }
      }
      const loops = [loop(), loop(), loop()]
      try {
        await waitFor(() => seen.length >= 20, 5000, 'traffic before the reload')
        const moved = routes().map((r) => (r as { name: string }).name === 'keep-prefix' ? { ...(r as object), pool: 'api' } : r)
        const result = running.lb.reload(resolveConfig({ ...config, listen: running.lb.config.listen, workers: mode.workers, log: { level: 'silent', access: false }, routes: moved }))
        assert.equal(result.applied, true)
        assert.deepEqual(result.restartNeeded, [])
        await waitFor(() => seen.length >= 10 && seen.slice(-10).every((n) => n === 'b1' || n === 'b2'), 5000, 'the moved route reaching pool api')
      } finally {
        stop = true
        await Promise.all(loops)
      }
      assert.deepEqual(failures, [])
    })
  })

  describe(`routing without a default pool (${mode.name})`, () => {
    let w: Upstream
    let running: RunningLb

    before(async () => {
      w = await upstream('w')
      running = await startLb({
        pools: { web: { upstreams: [{ address: w.address }] } },
        routes: [{ match: { host: ['www.test'] }, pool: 'web' }],
      }, mode.workers)
    })

    after(async () => {
      await running.stop()
      await w.close()
    })

    test('an unmatched request is 404 SWY_ERR_NO_ROUTE; a matched one goes to its pool', async () => {
      assert.equal((await get(running.port, '/', { host: 'www.test' })).echo?.name, 'w')
      const missing = await get(running.port, '/', { host: 'other.test' })
      assert.equal(missing.status, 404)
      assert.match(missing.body, /No route for this request/)
      // HTTP/1.0 without Host matches no host route: 404, and the matcher survives it
      const raw = await rawExchange(running.port, 'GET / HTTP/1.0\r\n\r\n')
      assert.match(raw.text, /^HTTP\/1\.1 404 /)
    })
  })
}
