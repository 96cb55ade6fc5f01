/**
 * The admin API against a real switchyard in both modes: status JSON, request
 * counters in /metrics, drain/enable, reload under traffic, token auth.
 */
import { describe, test, before, after } from 'node:test'
import * as assert from 'node:assert/strict'
import * as http from 'node:http'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, startLb, type RunningLb } from './harness'
import { startEchoUpstream, httpRequest, waitFor } from '../helpers'
import { startAdmin, type AdminServer } from '../../src/admin/server'
import { loadConfigFile } from '../../src/config/load'

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: string }

async function adminCall (admin: AdminServer, path: string, opts: { method?: string, token?: string, headers?: http.OutgoingHttpHeaders } = {}): Promise<Reply> {
  const headers: http.OutgoingHttpHeaders = { ...opts.headers }
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  return await httpRequest(admin.address.port, { path, method: opts.method ?? 'GET', headers })
}

async function json<T = any> (admin: AdminServer, path: string, opts: { method?: string, token?: string } = {}): Promise<{ status: number, body: T }> {
  const reply = await adminCall(admin, path, opts)
  assert.match(String(reply.headers['content-type']), /^application\/json/, `${path}: ${reply.body}`)
  return { status: reply.status, body: JSON.parse(reply.body) as T }
}

/** Sum of every sample of `name` (any labels) in a Prometheus text body. */
function metricSum (text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

/** Which upstream answered (the echo upstreams put their name in the JSON body). */
async function whoAnswers (port: number, path = '/'): Promise<string> {
  const reply = await httpRequest(port, { path })
  assert.equal(reply.status, 200, reply.body)
  return (JSON.parse(reply.body) as { name: string }).name
}

for (const mode of MODES) {
  describe(`admin API (${mode.name})`, () => {
    const slowSeen: string[] = []
    const slowHook = (name: string) => (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
      if (req.url !== '/slow') return false
      slowSeen.push(name)
      setTimeout(() => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ name })) }, 400)
      return true
    }
    let a: Awaited<ReturnType<typeof startEchoUpstream>>
    let b: Awaited<ReturnType<typeof startEchoUpstream>>
    let c: Awaited<ReturnType<typeof startEchoUpstream>>
    let running: RunningLb
    let admin: AdminServer
    let dir: string

    before(async () => {
      a = await startEchoUpstream('a', slowHook('a'))
      b = await startEchoUpstream('b', slowHook('b'))
      c = await startEchoUpstream('c')
      running = await startLb({ upstreams: [{ address: a.address }, { address: b.address }] }, mode.workers)
      // config `admin: { listen: '127.0.0.1:0' }` is refused while load.ts
      // compares it with `listen` ('127.0.0.1:0' too): pass the address here
      admin = await startAdmin(running.lb, { listen: '127.0.0.1:0' })
      dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'))
    })

    after(async () => {
      await admin?.close()
      await running?.stop()
      await Promise.all([a?.close(), b?.close(), c?.close()])
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    })

    test('admin listen port 0 binds a real port; /api/status has the documented shape', async () => {
      assert.ok(admin.address.port > 0)
      assert.equal(admin.address.host, '127.0.0.1')
      const threads = mode.workers === 0 ? 1 : mode.workers
      await waitFor(async () => (await json(admin, '/api/status')).body.workers.length === threads, 5000, 'worker slots claimed')
      const { status, body } = await json(admin, '/api/status')
      assert.equal(status, 200)
      assert.match(body.version, /^\d+\.\d+\.\d+/)
      assert.equal(typeof body.uptimeMs, 'number')
      assert.equal(body.mode, mode.workers === 0 ? 'sequential' : 'workers')
      assert.equal(body.workerCount, mode.workers)
      assert.deepEqual(body.upstreams.map((u: any) => u.address), [a.address, b.address])
      for (const u of body.upstreams) {
        assert.match(u.id, /^u\d+$/)
        assert.equal(u.healthy, true)
        assert.equal(u.draining, false)
        assert.equal(u.health, 'up')
        for (const key of ['activeRequests', 'openSockets', 'requests', 'failures']) assert.equal(typeof u[key], 'number', key)
        assert.deepEqual(Object.keys(u.totals.responses), ['1xx', '2xx', '3xx', '4xx', '5xx'])
        assert.equal(typeof u.totals.latencySumMs, 'number')
      }
      for (const w of body.workers) {
        assert.ok(w.threadId > 0)
        for (const key of ['slot', 'openConnections', 'requests', 'loopLagMs']) assert.equal(typeof w[key], 'number', key)
      }
      assert.deepEqual(body.rateLimit, { enabled: false, tableSize: 0, slotsUsed: 0, evictions: 0, tableFull: 0, limited: 0 })
      assert.deepEqual(body.cache, { enabled: false, bytes: 0, entries: 0, hits: 0, misses: 0 })
      for (const key of ['requests', 'upstreamRequests', 'connectionsAccepted', 'rateLimited', 'firewallBlocked', 'protocolErrors', 'workerRestarts']) {
        assert.equal(typeof body.totals[key], 'number', key)
      }
      const missing = await json(admin, '/api/nothing')
      assert.equal(missing.status, 404)
    })

    test('/metrics request counters equal the requests sent', async () => {
      const N = 24
      for (let i = 0; i < N; i++) await whoAnswers(running.port, `/count/${i}`)
      const reply = await adminCall(admin, '/metrics')
      assert.equal(reply.status, 200)
      assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/)
      assert.equal(metricSum(reply.body, 'switchyard_upstream_responses_total'), N)
      assert.equal(metricSum(reply.body, 'switchyard_upstream_requests_total'), N)
      assert.equal(metricSum(reply.body, 'switchyard_upstream_response_seconds_count'), N)
      assert.equal(metricSum(reply.body, 'switchyard_connections_accepted_total'), N)
      assert.equal(metricSum(reply.body, 'switchyard_upstream_failures_total'), 0)
      assert.match(reply.body, new RegExp(`switchyard_upstream_responses_total\\{upstream="${a.address}",pool="default",class="2xx"\\} ${N / 2}\\n`))
      assert.match(reply.body, /# TYPE switchyard_upstream_response_seconds histogram/)
      assert.match(reply.body, /switchyard_event_loop_lag_seconds\{worker="\d+"\} /)
      // prom-client's process families cover the whole process (all worker threads' CPU)
      assert.match(reply.body, /^process_cpu_seconds_total \d/m)
      assert.match(reply.body, /^process_resident_memory_bytes \d/m)
      // client-facing counts land right after a worker's last write: a moment after the client has its answer
      let body: any
      await waitFor(async () => (body = (await json(admin, '/api/status')).body).totals.responses['2xx'] === N, 3000, 'every response counted')
      assert.equal(body.totals.requests, N)
      assert.equal(body.totals.responsesBySource.upstream['2xx'], N)
      assert.equal(body.totals.upstreamResponses['2xx'], N)
      assert.match((await adminCall(admin, '/metrics')).body, new RegExp(`switchyard_requests_total\\{class="2xx",source="upstream"\\} ${N}\\n`))
    })

    test('drain takes an upstream out of rotation, in-flight requests finish; enable brings it back', async () => {
      const { body } = await json(admin, '/api/status')
      const idOf = (address: string): string => body.upstreams.find((u: any) => u.address === address).id

      // a slow request in flight on whichever upstream it lands on
      slowSeen.length = 0
      const slow = httpRequest(running.port, { path: '/slow' })
      await waitFor(() => slowSeen.length === 1, 5000, 'slow request at an upstream')
      const busy = slowSeen[0] === 'a' ? a : b
      const other = busy === a ? 'b' : 'a'

      const drained = await json(admin, `/api/upstreams/${idOf(busy.address)}/drain`, { method: 'POST' })
      assert.equal(drained.status, 200)
      assert.deepEqual(drained.body, { id: idOf(busy.address), pool: 'default', address: busy.address, draining: true })
      const finished = await slow
      assert.equal(finished.status, 200, 'the in-flight request finished')
      assert.equal(JSON.parse(finished.body).name, slowSeen[0])

      for (let i = 0; i < 8; i++) assert.equal(await whoAnswers(running.port), other, 'no new request to the drained upstream')
      const status = (await json(admin, '/api/status')).body
      assert.equal(status.upstreams.find((u: any) => u.address === busy.address).health, 'draining')
      const metrics = (await adminCall(admin, '/metrics')).body
      assert.match(metrics, new RegExp(`switchyard_upstream_draining\\{upstream="${busy.address}",pool="default"\\} 1\\n`))

      // enable by address (URL-encoded) this time
      const enabled = await json(admin, `/api/upstreams/${encodeURIComponent(busy.address)}/enable`, { method: 'POST' })
      assert.equal(enabled.status, 200)
      assert.equal(enabled.body.draining, false)
      const seen = new Set<string>()
      for (let i = 0; i < 8; i++) seen.add(await whoAnswers(running.port))
      assert.deepEqual([...seen].sort(), ['a', 'b'])

      assert.equal((await json(admin, '/api/upstreams/u63/drain', { method: 'POST' })).status, 404)
      assert.equal((await json(admin, '/api/upstreams/nope/enable', { method: 'POST' })).status, 404)
      assert.equal((await json(admin, `/api/upstreams/${idOf(a.address)}/drain`)).status, 405)
    })

    test('reload via the API under continuous traffic: zero failures; a bad file is refused with JSON paths', async () => {
      const lb = running.lb
      lb.configSource = null
      const refused = await json(admin, '/api/reload', { method: 'POST' })
      assert.equal(refused.status, 409)
      assert.equal(refused.body.error, 'started without a config file')

      const file = join(dir, 'lb.json')
      const write = (body: Record<string, unknown>): void => writeFileSync(file, JSON.stringify(body))
      const base = { listen: lb.config.listen, workers: mode.workers, log: { level: 'silent', access: false } }
      lb.configSource = () => loadConfigFile(file)

      const results: string[] = []
      const failures: string[] = []
      let stop = false
      const loop = async (): Promise<void> => {
        while (!stop) {
          try {
            const reply = await httpRequest(running.port, { path: '/loop' })
            if (reply.status === 200) results.push((JSON.parse(reply.body) as { name: string }).name)
            else failures.push(`status ${reply.status}: ${reply.body}`)
          } catch (err) {
            failures.push((err as Error).message)
          }
        }
      }
      const loops = [loop(), loop()]
      try {
        await waitFor(() => results.length >= 20, 5000, 'traffic before the reload')

        write({ ...base, upstreams: [{ address: c.address }] })
        const reloaded = await json(admin, '/api/reload', { method: 'POST' })
        assert.equal(reloaded.status, 200, JSON.stringify(reloaded.body))
        assert.deepEqual(reloaded.body, { applied: true, restartNeeded: [], warnings: [] })
        // every thread has the new table once the last requests all go to c
        await waitFor(() => results.length >= 10 && results.slice(-10).every((name) => name === 'c'), 5000, 'requests going to the new upstream list')
        const status = (await json(admin, '/api/status')).body
        assert.deepEqual(status.upstreams.map((u: any) => u.address), [c.address])

        write({ ...base, upstreams: [{ address: 'not an address' }], retries: 99, surprise: true })
        const bad = await json(admin, '/api/reload', { method: 'POST' })
        assert.equal(bad.status, 400)
        assert.ok(Array.isArray(bad.body.errors))
        const errors = (bad.body.errors as string[]).join('\n')
        assert.match(errors, /\/upstreams\/0\/address/)
        assert.match(errors, /\/retries/)
        assert.match(errors, /unknown key "surprise"/)

        // still serving the previous (good) config
        const mark = results.length
        await waitFor(() => results.length >= mark + 20, 5000, 'traffic after the refused reload')
        assert.ok(results.slice(mark).every((name) => name === 'c'))
      } finally {
        stop = true
        await Promise.all(loops)
      }
      assert.deepEqual(failures, [], 'no request failed during the reloads')
      assert.ok(results.length >= 50)
    })
  })
}

describe('admin token auth', () => {
  const token = 'correct-horse-battery'
  let up: Awaited<ReturnType<typeof startEchoUpstream>>
  let running: RunningLb
  let admin: AdminServer

  before(async () => {
    up = await startEchoUpstream('only')
    running = await startLb({ upstreams: [{ address: up.address }] }, 0)
    admin = await startAdmin(running.lb, { listen: '127.0.0.1:0', token })
  })

  after(async () => {
    await admin?.close()
    await running?.stop()
    await up?.close()
  })

  test('401 without or with a wrong token, 200 with it; the page takes ?token=', async () => {
    for (const path of ['/api/status', '/metrics', '/']) {
      const none = await adminCall(admin, path)
      assert.equal(none.status, 401, path)
      assert.match(String(none.headers['www-authenticate']), /^Bearer/)
      assert.equal((await adminCall(admin, path, { token: 'correct-horse-batterx' })).status, 401, path)
      assert.equal((await adminCall(admin, path, { token: token + 'x' })).status, 401, path)
      assert.equal((await adminCall(admin, path, { token })).status, 200, path)
    }
    assert.equal((await adminCall(admin, '/api/upstreams/u0/drain', { method: 'POST' })).status, 401)

    const page = await adminCall(admin, `/?token=${token}`)
    assert.equal(page.status, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(String(page.headers['content-security-policy']), /connect-src 'self'/)
    assert.match(page.body, /<svg id="chart"/)
    // only the page accepts the query token, not the API
    assert.equal((await adminCall(admin, `/api/status?token=${token}`)).status, 401)

    // state changes from another site's page are refused even with a token
    const crossSite = await adminCall(admin, '/api/upstreams/u0/drain', { method: 'POST', token, headers: { origin: 'http://evil.example' } })
    assert.equal(crossSite.status, 403)
    assert.equal(running.lb.upstreamStatus()[0].draining, false)
  })
})
