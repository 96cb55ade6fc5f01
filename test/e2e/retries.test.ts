/**
 * Retries that are safe by construction (issue #14 item 5), end to end in both
 * modes: a GET that got a 503 goes to another upstream; a POST never does
 * unless it carries an Idempotency-Key and retryIdempotencyKey is on (and then
 * its body, kept because it is small, arrives whole); a body over
 * retryBodyMaxBytes is never replayed; the retry budget holds when every
 * upstream answers 503; Proxy-Status says what was received after retries.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { P_RETRIES, P_RETRY_BUDGET_DENIED } from '../../src/shared/layout'
import { RETRY_REASONS } from '../../src/health/pool-status'
import { MODES, startLb } from './harness'
import { startScripted, send, type Scripted } from './resilience-util'
import { refusedPort } from '../helpers'

const GATEWAY = P_RETRIES + RETRY_REASONS.indexOf('gateway-error')

async function closeAll (ups: Scripted[]): Promise<void> { await Promise.all(ups.map(async (u) => await u.close())) }

for (const mode of MODES) {
  test(`${mode.name}: a GET answered 503 is retried on another upstream; the client gets the 200`, async () => {
    const bad = await startScripted('bad', () => ({ status: 503 }))
    const good = await startScripted('good')
    // panic off and no Retry-After: this test is about the retry alone
    const run = await startLb({ upstreams: [{ address: bad.address }, { address: good.address }], retryOn: ['gateway-error'], healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
    try {
      const answers = []
      for (let i = 0; i < 10; i++) answers.push(await send(run.port))
      assert.ok(answers.every((a) => a.status === 200 && a.upstream === 'good'), JSON.stringify(answers.map((a) => a.status)))
      assert.ok(bad.count >= 3, `the 503 upstream had its turns (${bad.count})`)
      assert.equal(good.count, 10)
      assert.equal(run.lb.state.pool(0, GATEWAY), bad.count, 'every 503 counted as a gateway-error retry')
      const retried = answers.filter((a) => a.headers['proxy-status'] !== undefined)
      assert.equal(retried.length, bad.count)
      for (const a of retried) assert.equal(a.headers['proxy-status'], 'switchyard; received-status=200')
    } finally {
      await run.stop()
      await closeAll([bad, good])
    }
  })

  test(`${mode.name}: a POST is never retried without Idempotency-Key, and is with it (body replayed whole)`, async () => {
    const bad = await startScripted('bad', () => ({ status: 503 }))
    const good = await startScripted('good')
    const upstreams = [{ address: bad.address }, { address: good.address }]
    const body = JSON.stringify({ order: 42, items: 'x'.repeat(3000) })
    try {
      const plain = await startLb({ upstreams, retryOn: ['gateway-error'], healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
      try {
        const statuses: number[] = []
        for (let i = 0; i < 6; i++) statuses.push((await send(plain.port, { method: 'POST', path: '/orders', body })).status)
        assert.equal(bad.count + good.count, 6, 'each POST reached exactly one upstream')
        assert.equal(statuses.filter((s) => s === 503).length, bad.count, 'the 503s were relayed, not retried')
        assert.ok(bad.count > 0)
        // with a key but retryIdempotencyKey off: still never
        const keyed = await send(plain.port, { method: 'POST', path: '/orders', body, headers: { 'idempotency-key': 'k-0' } })
        assert.ok(keyed.status === 200 || keyed.status === 503)
        assert.equal(bad.count + good.count, 7)
      } finally {
        await plain.stop()
      }
      bad.count = 0
      good.count = 0
      good.bodies.length = 0
      const keyedRun = await startLb({ upstreams, retryOn: ['gateway-error'], retryIdempotencyKey: true, healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
      try {
        for (let i = 0; i < 6; i++) {
          const a = await send(keyedRun.port, { method: 'POST', path: '/orders', body, headers: { 'idempotency-key': `k-${i}` } })
          assert.equal(a.status, 200, `POST with Idempotency-Key #${i}`)
        }
        assert.ok(bad.count > 0, 'some went to the 503 upstream first')
        assert.equal(good.count, 6)
        assert.ok(good.bodies.every((b) => b === body), 'every replayed body arrived whole')
      } finally {
        await keyedRun.stop()
      }
    } finally {
      await closeAll([bad, good])
    }
  })

  test(`${mode.name}: a body over retryBodyMaxBytes streams and is never replayed`, async () => {
    const bad = await startScripted('bad', () => ({ status: 503 }))
    const good = await startScripted('good')
    const run = await startLb({ upstreams: [{ address: bad.address }, { address: good.address }], retryOn: ['gateway-error'], retryBodyMaxBytes: 1024, healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
    try {
      // big enough not to come with the head in one read (what comes with the head is always at hand)
      const big = 'y'.repeat(512 * 1024)
      const statuses: number[] = []
      for (let i = 0; i < 6; i++) statuses.push((await send(run.port, { method: 'PUT', path: '/blob', body: big })).status)
      assert.equal(bad.count + good.count, 6, `no replay of a large body (${statuses.join(' ')})`)
      assert.equal(statuses.filter((s) => s === 503).length, bad.count)
      // a small PUT is replayed
      bad.count = 0
      good.count = 0
      for (let i = 0; i < 6; i++) assert.equal((await send(run.port, { method: 'PUT', path: '/small', body: 'z'.repeat(100) })).status, 200)
      assert.equal(good.count, 6)
    } finally {
      await run.stop()
      await closeAll([bad, good])
    }
  })

  test(`${mode.name}: the retry budget caps retries when every upstream answers 503`, async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map(async (n) => await startScripted(n, () => ({ status: 503, delayMs: 150 }))))
    const run = await startLb({
      upstreams: ups.map((u) => ({ address: u.address })),
      retries: 2,
      retryOn: ['gateway-error'],
      retryBudgetPercent: 20,
      healthCheck: { panicThresholdPercent: 0 },
    }, mode.workers)
    try {
      const N = 30
      const answers = await Promise.all(Array.from({ length: N }, async () => await send(run.port)))
      assert.ok(answers.every((a) => a.status === 503), 'every request ends with the upstreams\' 503')
      const hits = ups.reduce((n, u) => n + u.count, 0)
      const denied = run.lb.state.pool(0, P_RETRY_BUDGET_DENIED)
      console.log(`${mode.name}: ${N} requests, ${hits} upstream hits (without a budget: ${N * 3}), ${denied} retries refused by the budget`)
      // 30 in flight allow 6 retries in flight (20%), then fewer: far below the 90 a storm would send
      assert.ok(hits < N * 2, `the budget held: ${hits} hits for ${N} requests`)
      assert.ok(denied >= N / 2, `retries refused by the budget: ${denied}`)
      const exhausted = answers.filter((a) => a.headers['proxy-status'] === 'switchyard; received-status=503')
      assert.ok(exhausted.length > 0 && exhausted.length <= hits - N, `a response relayed after retries says what was received (${exhausted.length})`)
    } finally {
      await run.stop()
      await closeAll(ups)
    }
  })
}

for (const mode of MODES) {
  test(`${mode.name}: with no other upstream to go to, the 503 is the answer; a retry that cannot start is not counted`, async () => {
    const only = await startScripted('only', () => ({ status: 503 }))
    const run = await startLb({ upstreams: [{ address: only.address }], retryOn: ['gateway-error'], healthCheck: { panicThresholdPercent: 0, passive: { maxFailures: 100 } } }, mode.workers)
    try {
      for (let i = 0; i < 3; i++) {
        const answer = await send(run.port)
        assert.equal(answer.status, 503, `request ${i}: the upstream's own answer, not a 502`)
        assert.equal(answer.upstream, 'only')
        assert.equal(answer.headers['proxy-status'], undefined, 'nothing was tried again')
      }
      assert.equal(only.count, 3)
      assert.equal(run.lb.state.pool(0, GATEWAY), 0, 'no retry counted')
    } finally {
      await run.stop()
      await closeAll([only])
    }
  })

  test(`${mode.name}: a refused connection with no other upstream: a 502 and no retry counted`, async () => {
    const dead = await refusedPort()
    const run = await startLb({ upstreams: [{ address: `127.0.0.1:${dead}` }], healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
    try {
      assert.equal((await send(run.port)).status, 502)
      for (const reason of RETRY_REASONS) assert.equal(run.lb.state.pool(0, P_RETRIES + RETRY_REASONS.indexOf(reason)), 0, reason)
    } finally {
      await run.stop()
    }
  })
}

for (const mode of MODES) {
  test(`${mode.name}: a timeout with retryOn timeout and no other upstream: the 504 of a timeout, not a connect failure's 502`, async () => {
    const hung = await startScripted('hung', () => ({ status: 200, delayMs: 5_000 }))
    const run = await startLb({ upstreams: [{ address: hung.address }], retryOn: ['timeout'], timeouts: { responseMs: 300 }, healthCheck: { panicThresholdPercent: 0 } }, mode.workers)
    try {
      const answer = await send(run.port)
      assert.equal(answer.status, 504)
      assert.match(String(answer.headers['proxy-status']), /^switchyard; error=http_response_timeout/)
      assert.equal(run.lb.state.pool(0, P_RETRIES + RETRY_REASONS.indexOf('timeout')), 0, 'no retry counted')
    } finally {
      await run.stop()
      await closeAll([hung])
    }
  })
}
