/**
 * Panic mode and backup upstreams (issue #14, items 1 and 2), end to end in
 * both modes:
 *   - one upstream that closes one connection on purpose keeps serving the next
 *     requests (the 10 s burst of 502 "No healthy upstream" it used to cause);
 *   - two of three upstreams down with panicThresholdPercent 50: the pool
 *     balances over all three, every request is answered (a refused connection
 *     goes on to the next upstream), and the dead ones keep being tried;
 *   - a backup upstream takes traffic only while no primary is healthy.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { P_PANIC, P_PANIC_TRANSITIONS, U_HEALTHY, U_REQUESTS } from '../../src/shared/layout'
import { waitFor, refusedPort, httpRequest } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'
import { startAdmin } from '../../src/admin/server'

interface Named { name: string, port: number, address: string, count: number, close: () => Promise<void> }

/** An upstream that names itself in x-upstream; `/kill` destroys the connection instead of answering. */
async function startNamed (name: string, port = 0): Promise<Named> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      named.count++
      if (req.url === '/kill') { req.socket.destroy(); return }
      res.writeHead(200, { 'x-upstream': name, 'content-length': name.length })
      res.end(name)
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const bound = (server.address() as AddressInfo).port
  const named: Named = {
    name,
    port: bound,
    address: `127.0.0.1:${bound}`,
    count: 0,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return named
}

function slotOf (run: RunningLb, address: string): number {
  const entry = run.lb.table.find((e) => e.address === address)
  assert.ok(entry !== undefined)
  return entry.slot
}

async function get (port: number, path = '/', method = 'GET'): Promise<{ status: number, upstream: string }> {
  try {
    const r = await httpRequest(port, { path, method })
    return { status: r.status, upstream: String(r.headers['x-upstream'] ?? '') }
  } catch {
    return { status: 0, upstream: '' }
  }
}

for (const mode of MODES) {
  test(`${mode.name}: a lone upstream that closes one connection on purpose keeps serving (no 502 burst)`, async () => {
    const only = await startNamed('only')
    // maxFailures 1: the setting that turned one closed connection into 10 s of 502s
    const run = await startLb({ upstreams: [{ address: only.address }], healthCheck: { passive: { maxFailures: 1, cooldownMs: 10_000 } } }, mode.workers)
    try {
      // not idempotent, so not retried: this one request fails, and ejects the upstream
      const killed = await get(run.port, '/kill', 'POST')
      assert.equal(killed.status, 502)
      await waitFor(() => run.lb.state.upstream(slotOf(run, only.address), U_HEALTHY) === 0, 2000, 'passive ejection')
      const statuses: number[] = []
      for (let i = 0; i < 20; i++) statuses.push((await get(run.port)).status)
      assert.deepEqual(statuses, new Array(20).fill(200), 'every request after the closed connection is served')
      assert.equal(run.lb.state.pool(0, P_PANIC), 1, 'the pool is in panic mode while its only upstream is ejected')
      assert.ok(run.lb.state.pool(0, P_PANIC_TRANSITIONS) >= 1)
      const admin = await startAdmin(run.lb, { listen: '127.0.0.1:0' })
      try {
        const status = JSON.parse((await httpRequest(admin.address.port, { path: '/api/status' })).body) as { pools: Array<{ name: string, panic: boolean, panicTransitions: number }> }
        assert.equal(status.pools[0].name, 'default')
        assert.equal(status.pools[0].panic, true)
        const metrics = (await httpRequest(admin.address.port, { path: '/metrics' })).body
        assert.match(metrics, /^switchyard_pool_panic\{pool="default"\} 1$/m)
      } finally {
        await admin.close()
      }
    } finally {
      await run.stop()
      await only.close()
    }
  })

  test(`${mode.name}: two of three upstreams down, threshold 50: traffic spread over all three, every request answered`, async () => {
    const live = await startNamed('live')
    const dead = [`127.0.0.1:${await refusedPort()}`, `127.0.0.1:${await refusedPort()}`]
    const run = await startLb({
      upstreams: [{ address: live.address }, { address: dead[0] }, { address: dead[1] }],
      healthCheck: { panicThresholdPercent: 50, passive: { maxFailures: 1, cooldownMs: 60_000 } },
    }, mode.workers)
    try {
      const statuses: number[] = []
      for (let i = 0; i < 30; i++) statuses.push((await get(run.port)).status)
      assert.deepEqual(statuses, new Array(30).fill(200), 'a refused connection goes on to the next upstream')
      await waitFor(() => dead.every((a) => run.lb.state.upstream(slotOf(run, a), U_HEALTHY) === 0), 2000, 'both dead upstreams ejected')
      assert.equal(run.lb.state.pool(0, P_PANIC), 1, '1 of 3 healthy is below 50%: panic')
      const before = dead.map((a) => run.lb.state.upstream(slotOf(run, a), U_REQUESTS))
      for (let i = 0; i < 30; i++) assert.equal((await get(run.port)).status, 200)
      const tried = dead.map((a, i) => run.lb.state.upstream(slotOf(run, a), U_REQUESTS) - before[i])
      // round robin over three: each dead one is the first choice of about a third of the requests
      for (const n of tried) assert.ok(n >= 4, `a dead upstream still gets its turns in panic mode (tried ${tried.join(', ')})`)
    } finally {
      await run.stop()
      await live.close()
    }
  })

  test(`${mode.name}: a backup takes traffic only while no primary is healthy`, async () => {
    const a = await startNamed('a')
    const b = await startNamed('b')
    const backup = await startNamed('backup')
    const run = await startLb({
      upstreams: [{ address: a.address }, { address: b.address }, { address: backup.address, backup: true }],
      healthCheck: { passive: { maxFailures: 1, cooldownMs: 500 } },
    }, mode.workers)
    let a2: Named | null = null
    let b2: Named | null = null
    try {
      const first: string[] = []
      for (let i = 0; i < 12; i++) first.push((await get(run.port)).upstream)
      assert.ok(!first.includes('backup'), `primaries up: no request to the backup (${first.join(' ')})`)
      assert.ok(first.includes('a') && first.includes('b'))

      await Promise.all([a.close(), b.close()])
      const during: Array<{ status: number, upstream: string }> = []
      for (let i = 0; i < 12; i++) during.push(await get(run.port))
      assert.ok(during.every((r) => r.status === 200 && r.upstream === 'backup'), `primaries down: the backup answers (${JSON.stringify(during)})`)
      assert.equal(run.lb.state.pool(0, P_PANIC), 0, 'backup mode is not panic')

      // the primaries come back on their ports; after the cooldown they are tried again and win
      a2 = await startNamed('a', a.port)
      b2 = await startNamed('b', b.port)
      await waitFor(() => [a.address, b.address].every((x) => run.lb.state.upstream(slotOf(run, x), U_HEALTHY) === 1), 3000, 'primaries revived')
      const after: string[] = []
      for (let i = 0; i < 12; i++) after.push((await get(run.port)).upstream)
      assert.ok(!after.includes('backup'), `primaries back: the backup is idle again (${after.join(' ')})`)
    } finally {
      await run.stop()
      await Promise.all([backup.close(), a2?.close(), b2?.close()])
    }
  })
}
