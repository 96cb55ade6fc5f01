/**
 * Connection caps with a queue (issue #14 item 4), end to end in both modes:
 * `maxConnections: 2` with 10 concurrent slow requests keeps at most 2 in
 * flight at the upstream (counted across workers) and serves the rest from the
 * queue; a request that waits longer than queue.timeoutMs gets 503 with
 * Retry-After; no queue section means 503 at once; a client that goes away
 * leaves the queue; shutdown drains the queue with 503s instead of hanging.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { P_QUEUE_WAITING, P_QUEUE_TIMEOUTS } from '../../src/shared/layout'
import { waitFor } from '../helpers'
import { MODES, startLb } from './harness'
import { startScripted, send } from './resilience-util'

for (const mode of MODES) {
  test(`${mode.name}: maxConnections 2, 10 concurrent slow requests: at most 2 in flight, the rest queued then served`, async () => {
    const slow = await startScripted('slow', () => ({ status: 200, delayMs: 200 }))
    const run = await startLb({ upstreams: [{ address: slow.address, maxConnections: 2 }], queue: { maxSize: 50, timeoutMs: 10_000 } }, mode.workers)
    try {
      const started = Date.now()
      const answers = await Promise.all(Array.from({ length: 10 }, async () => await send(run.port)))
      const ms = Date.now() - started
      assert.deepEqual(answers.map((a) => a.status), new Array(10).fill(200))
      assert.equal(slow.maxInFlight, 2, 'never more than maxConnections at the upstream, and the cap is used')
      assert.ok(ms >= 5 * 200 - 50, `served two at a time (${ms} ms)`)
      assert.equal(run.lb.state.pool(0, P_QUEUE_WAITING), 0, 'nobody left waiting')
    } finally {
      await run.stop()
      await slow.close()
    }
  })

  test(`${mode.name}: a request that waits longer than queue.timeoutMs gets 503 with Retry-After; no queue: 503 at once`, async () => {
    const slow = await startScripted('slow', () => ({ status: 200, delayMs: 1500 }))
    const run = await startLb({ upstreams: [{ address: slow.address, maxConnections: 1 }], queue: { maxSize: 10, timeoutMs: 300 } }, mode.workers)
    try {
      const answers = await Promise.all(Array.from({ length: 3 }, async () => await send(run.port)))
      const statuses = answers.map((a) => a.status).sort()
      assert.deepEqual(statuses, [200, 503, 503])
      for (const a of answers.filter((x) => x.status === 503)) {
        assert.equal(a.headers['retry-after'], '1')
        assert.match(a.body, /Timed out waiting for an upstream connection slot/)
        assert.equal(a.headers['proxy-status'], 'switchyard; error=connection_limit_reached')
      }
      assert.equal(run.lb.state.pool(0, P_QUEUE_TIMEOUTS), 2)
      assert.equal(slow.maxInFlight, 1)
    } finally {
      await run.stop()
    }
    const noQueue = await startLb({ upstreams: [{ address: slow.address, maxConnections: 1 }] }, mode.workers)
    try {
      const started = Date.now()
      const answers = await Promise.all([send(noQueue.port), (async () => { await new Promise((resolve) => setTimeout(resolve, 100)); return await send(noQueue.port) })()])
      assert.equal(answers[1].status, 503)
      assert.match(answers[1].body, /queue is full/)
      assert.ok(Date.now() - started < 1500 || answers[0].status === 200)
    } finally {
      await noQueue.stop()
      await slow.close()
    }
  })

  test(`${mode.name}: a client that goes away leaves the queue; shutdown drains it with 503s`, async () => {
    const slow = await startScripted('slow', () => ({ status: 200, delayMs: 1000 }))
    const run = await startLb({ upstreams: [{ address: slow.address, maxConnections: 1 }], queue: { maxSize: 10, timeoutMs: 20_000 } }, mode.workers)
    let stopped = false
    try {
      const first = send(run.port)
      await waitFor(() => slow.inFlight === 1, 3000, 'the first request at the upstream')
      // a second one queues, then its client gives up
      const req = http.request({ host: '127.0.0.1', port: run.port, agent: false, path: '/' })
      req.on('error', () => {})
      req.end()
      await waitFor(() => run.lb.state.pool(0, P_QUEUE_WAITING) === 1, 3000, 'one waiting')
      req.destroy()
      await waitFor(() => run.lb.state.pool(0, P_QUEUE_WAITING) === 0, 3000, 'the waiter left with its client')
      assert.equal((await first).status, 200)
      assert.equal(slow.count, 1, 'the abandoned request never reached the upstream')

      // two wait behind a busy upstream; shutdown answers them instead of letting them hang
      const busy = send(run.port)
      await waitFor(() => slow.inFlight === 1, 3000, 'busy again')
      const waiting = [send(run.port), send(run.port)]
      await waitFor(() => run.lb.state.pool(0, P_QUEUE_WAITING) === 2, 3000, 'two waiting')
      const stopping = run.stop()
      stopped = true
      const drained = await Promise.all(waiting)
      assert.deepEqual(drained.map((a) => a.status), [503, 503])
      assert.equal((await busy).status, 200, 'the request in flight finishes')
      await stopping
    } finally {
      if (!stopped) await run.stop()
      await slow.close()
    }
  })
}
