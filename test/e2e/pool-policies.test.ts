/**
 * The resilience policies are per pool (issue #14 with #13's named pools), end
 * to end in both modes: a pool's own queue and connection cap, and its own
 * panic threshold, leave the other pools alone.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { P_QUEUE_TIMEOUTS, P_PANIC } from '../../src/shared/layout'
import { refusedPort } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'
import { startScripted, send } from './resilience-util'

function poolSlot (run: RunningLb, pool: string): number {
  const entry = run.lb.table.find((e) => e.pool === pool)
  assert.ok(entry !== undefined)
  return entry.poolSlot
}

for (const mode of MODES) {
  test(`${mode.name}: a pool's queue and caps are its own; its panic mode is its own`, async () => {
    const slowApi = await startScripted('api', () => ({ status: 200, delayMs: 800 }))
    const web = await startScripted('web')
    const deadApi = `127.0.0.1:${await refusedPort()}`
    const run = await startLb({
      upstreams: [{ address: web.address }],
      queue: { maxSize: 100, timeoutMs: 10_000 },
      pools: {
        api: { upstreams: [{ address: slowApi.address, maxConnections: 1 }], queue: { maxSize: 5, timeoutMs: 200 } },
        flaky: { upstreams: [{ address: slowApi.address }, { address: deadApi }], healthCheck: { panicThresholdPercent: 60, passive: { maxFailures: 1 } } },
      },
      routes: [{ match: { pathPrefix: '/api' }, pool: 'api' }, { match: { pathPrefix: '/flaky' }, pool: 'flaky' }],
    }, mode.workers)
    try {
      const api = Promise.all([send(run.port, { path: '/api/1' }), send(run.port, { path: '/api/2' }), send(run.port, { path: '/api/3' })])
      // meanwhile the default pool answers at once: the api pool's cap and queue are not its own
      const webAnswers = []
      for (let i = 0; i < 5; i++) webAnswers.push(await send(run.port, { path: '/' }))
      assert.ok(webAnswers.every((a) => a.status === 200 && a.upstream === 'web'))
      const statuses = (await api).map((a) => a.status).sort()
      assert.deepEqual(statuses, [200, 503, 503], 'the api pool: one at a time, 200 ms in its queue')
      assert.equal(run.lb.state.pool(poolSlot(run, 'api'), P_QUEUE_TIMEOUTS), 2)
      assert.equal(run.lb.state.pool(poolSlot(run, 'default'), P_QUEUE_TIMEOUTS), 0)

      // the flaky pool: its dead upstream is ejected, 1 of 2 healthy is below its 60%: panic there only
      for (let i = 0; i < 4; i++) assert.equal((await send(run.port, { path: '/flaky' })).status, 200)
      assert.equal(run.lb.state.pool(poolSlot(run, 'flaky'), P_PANIC), 1)
      assert.equal(run.lb.state.pool(poolSlot(run, 'default'), P_PANIC), 0)
      assert.equal(run.lb.state.pool(poolSlot(run, 'api'), P_PANIC), 0)
    } finally {
      await run.stop()
      await Promise.all([slowApi.close(), web.close()])
    }
  })
}
