/**
 * Passive health: ejection after maxFailures consecutive failures (exactly one
 * ejector even across threads), reset on success, and the primary's reviver
 * (half-open after cooldown, idle when active checks are on). Also the admin
 * status view of the same fields.
 */
import { test, describe, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { PassiveReviver, recordUpstreamFailure, recordUpstreamSuccess, reviverPollMs } from '../../src/health/passive'
import { upstreamStatus } from '../../src/health/status'
import type { PassiveHealthConfig } from '../../src/config/types'
import {
  ADMIN_DRAINING, U_ACTIVE_REQUESTS, U_ADMIN_STATE, U_CONSECUTIVE_FAILURES, U_EJECTED_AT, U_FAILURES,
  U_HEALTH_TRANSITIONS, U_HEALTHY, U_REQUESTS,
} from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import { waitFor } from '../helpers'
import { recorder } from './health-log'

function setup (count: number): { state: SharedState, table: UpstreamEntry[] } {
  const state = SharedState.create(0)
  const table: UpstreamEntry[] = []
  for (let i = 0; i < count; i++) {
    const port = 9000 + i
    table.push({ slot: i, index: i, pool: 'default', poolSlot: 0, address: `127.0.0.1:${port}`, host: '127.0.0.1', port, weight: i + 1, id: `u${i}` })
    state.initUpstreamSlot(i)
  }
  return { state, table }
}

const passive: PassiveHealthConfig = { maxFailures: 3, cooldownMs: 100, honorRetryAfter: true, maxRetryAfterMs: 60_000 }

const revivers: PassiveReviver[] = []
afterEach(() => { for (const r of revivers.splice(0)) r.stop() })

describe('recordUpstreamFailure / recordUpstreamSuccess', () => {
  test('maxFailures 3 ejects on the third failure, and only that call returns true', () => {
    const { state } = setup(1)
    const now = state.now()
    assert.equal(recordUpstreamFailure(state, 0, passive, now), false)
    assert.equal(recordUpstreamFailure(state, 0, passive, now), false)
    assert.equal(state.upstream(0, U_HEALTHY), 1)
    assert.equal(recordUpstreamFailure(state, 0, passive, now + 1), true)
    assert.equal(state.upstream(0, U_HEALTHY), 0)
    assert.equal(state.upstream(0, U_EJECTED_AT), now + 1)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 1)
    // Late failures of requests already in flight: counted, not re-ejected,
    // and they do not push the ejection time (and so the cooldown) forward.
    assert.equal(recordUpstreamFailure(state, 0, passive, now + 50), false)
    assert.equal(state.upstream(0, U_EJECTED_AT), now + 1)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 1)
    assert.equal(state.upstream(0, U_FAILURES), 4)
    assert.equal(state.upstream(0, U_CONSECUTIVE_FAILURES), 4)
  })

  test('a success resets the streak', () => {
    const { state } = setup(1)
    const now = state.now()
    recordUpstreamFailure(state, 0, passive, now)
    recordUpstreamFailure(state, 0, passive, now)
    recordUpstreamSuccess(state, 0, state.now())
    assert.equal(state.upstream(0, U_CONSECUTIVE_FAILURES), 0)
    assert.equal(recordUpstreamFailure(state, 0, passive, now), false)
    assert.equal(recordUpstreamFailure(state, 0, passive, now), false)
    assert.equal(state.upstream(0, U_HEALTHY), 1, 'two failures after a success do not eject')
    assert.equal(state.upstream(0, U_FAILURES), 4, 'the failure counter is not reset')
    recordUpstreamSuccess(state, 0, state.now())
    recordUpstreamSuccess(state, 0, state.now())
    assert.equal(state.upstream(0, U_CONSECUTIVE_FAILURES), 0)
  })

  test('maxFailures 1 ejects on the first failure', () => {
    const { state } = setup(1)
    assert.equal(recordUpstreamFailure(state, 0, { ...passive, maxFailures: 1 }, state.now()), true)
    assert.equal(state.upstream(0, U_HEALTHY), 0)
  })

  test('threads racing on the same upstream: exactly one ejects', async () => {
    const { state } = setup(1)
    const threads = 4
    const failuresEach = 2000
    // The workers load the compiled module next to this test's.
    const passivePath = join(__dirname, '..', '..', 'src', 'health', 'passive.js')
    const statePath = join(__dirname, '..', '..', 'src', 'shared', 'state.js')
    const source = `
      const { workerData, parentPort } = require('node:worker_threads')
      const { recordUpstreamFailure } = require(${JSON.stringify(passivePath)})
      const { SharedState } = require(${JSON.stringify(statePath)})
      const state = new SharedState(workerData.init)
      const start = new Int32Array(workerData.gate)
      // Spin until every thread is ready so the calls really overlap.
      Atomics.add(start, 0, 1)
      while (Atomics.load(start, 0) < workerData.threads) {}
      let ejections = 0
      for (let i = 0; i < workerData.failuresEach; i++) {
        if (recordUpstreamFailure(state, 0, workerData.passive, state.now())) ejections++
      }
      parentPort.postMessage(ejections)
    `
    const gate = new SharedArrayBuffer(4)
    const results = await Promise.all(Array.from({ length: threads }, async () => {
      // wait for the worker's own exit rather than terminate() it (nodejs/node#54918: terminating
      // a worker while V8 compiles for it can abort the process on Node 20)
      const worker = new Worker(source, { eval: true, workerData: { init: state.toInit(), gate, threads, failuresEach, passive: { maxFailures: 1000, cooldownMs: 100 } } })
      const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
      const ejections = await new Promise<number>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      const timer = setTimeout(() => { void worker.terminate() }, 10_000)
      await exited
      clearTimeout(timer)
      return ejections
    }))
    assert.equal(results.reduce((a, b) => a + b, 0), 1)
    assert.equal(state.upstream(0, U_FAILURES), threads * failuresEach)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 1)
    assert.equal(state.upstream(0, U_HEALTHY), 0)
  })
})

describe('PassiveReviver', () => {
  test('poll interval is a quarter of the cooldown, within [10 ms, 1 s]', () => {
    assert.equal(reviverPollMs(1), 10)
    assert.equal(reviverPollMs(100), 25)
    assert.equal(reviverPollMs(10_000), 1000)
  })

  test('without active checks, an ejected upstream comes back half-open after cooldownMs', async () => {
    const { state, table } = setup(2)
    const { log, lines } = recorder()
    const ejectedAt = state.now()
    for (let i = 0; i < passive.maxFailures; i++) recordUpstreamFailure(state, 1, passive, ejectedAt)
    assert.equal(state.upstream(1, U_HEALTHY), 0)

    const reviver = new PassiveReviver(passive, state, table, false, log)
    revivers.push(reviver)
    reviver.poll()
    assert.equal(state.upstream(1, U_HEALTHY), 0, 'not before the cooldown')
    reviver.start()
    await waitFor(() => state.upstream(1, U_HEALTHY) === 1, 2000, 'revival')
    assert.ok(SharedState.elapsed(state.now(), ejectedAt) >= passive.cooldownMs)
    assert.equal(state.upstream(1, U_CONSECUTIVE_FAILURES), passive.maxFailures - 1)
    assert.equal(state.upstream(1, U_HEALTH_TRANSITIONS), 2)
    assert.equal(state.upstream(0, U_HEALTH_TRANSITIONS), 0, 'the healthy neighbour is untouched')
    assert.equal(lines.length, 1)
    assert.equal(lines[0].level, 'info')
    assert.equal(lines[0].bindings.upstream, table[1].address)

    // Half-open: the next failure ejects again at once...
    assert.equal(recordUpstreamFailure(state, 1, passive, state.now()), true)
    await waitFor(() => state.upstream(1, U_HEALTHY) === 1, 2000, 'second revival')
    // ...while a success closes the streak.
    recordUpstreamSuccess(state, 1, state.now())
    assert.equal(recordUpstreamFailure(state, 1, passive, state.now()), false)
  })

  test('with active checks on it leaves ejected upstreams to the prober', async () => {
    const { state, table } = setup(1)
    const { log, lines } = recorder()
    const ejectedAt = state.now()
    for (let i = 0; i < passive.maxFailures; i++) recordUpstreamFailure(state, 0, passive, ejectedAt)
    const reviver = new PassiveReviver(passive, state, table, true, log)
    revivers.push(reviver)
    reviver.start()
    await waitFor(() => SharedState.elapsed(state.now(), ejectedAt) > passive.cooldownMs * 2, 2000, 'two cooldowns to pass')
    reviver.poll()
    assert.equal(state.upstream(0, U_HEALTHY), 0)
    assert.deepEqual(lines, [])

    // A reload that turns active checks off hands revival back to the reviver.
    reviver.setConfig(passive, false)
    await waitFor(() => state.upstream(0, U_HEALTHY) === 1, 2000, 'revival once active checks are off')
  })

  test('setTable: only upstreams in the current table are revived', async () => {
    const { state, table } = setup(2)
    const { log } = recorder()
    const ejectedAt = state.now()
    for (const slot of [0, 1]) for (let i = 0; i < passive.maxFailures; i++) recordUpstreamFailure(state, slot, passive, ejectedAt)
    const reviver = new PassiveReviver(passive, state, table, false, log)
    revivers.push(reviver)
    reviver.setTable([table[0]])
    reviver.start()
    await waitFor(() => state.upstream(0, U_HEALTHY) === 1, 2000, 'revival of the listed upstream')
    assert.equal(state.upstream(1, U_HEALTHY), 0)
  })
})

describe('upstreamStatus', () => {
  test('reports health, streaks and counters as unsigned numbers', () => {
    const { state, table } = setup(2)
    for (let i = 0; i < passive.maxFailures; i++) recordUpstreamFailure(state, 0, passive, state.now())
    state.storeUpstream(1, U_ADMIN_STATE, ADMIN_DRAINING)
    state.storeUpstream(1, U_REQUESTS, -1) // wrapped past 2^31
    state.addUpstream(1, U_ACTIVE_REQUESTS, 2)
    state.recordResponse(1, 204, 3)
    state.recordResponse(1, 503, 3)
    state.recordResponse(1, 502, 3)
    const [ejected, draining] = upstreamStatus(state, table)
    assert.deepEqual(ejected, {
      id: 'u0',
      pool: 'default',
      key: table[0].address,
      address: table[0].address,
      weight: 1,
      healthy: false,
      draining: false,
      consecutiveFailures: 3,
      lastCheck: null,
      activeRequests: 0,
      openSockets: 0,
      requests: 0,
      failures: 3,
      healthTransitions: 1,
      responses: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
    })
    assert.equal(draining.healthy, true)
    assert.equal(draining.draining, true)
    assert.equal(draining.weight, 2)
    assert.equal(draining.requests, 2 ** 32 - 1)
    assert.equal(draining.activeRequests, 2)
    assert.deepEqual(draining.responses, { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 2 })
  })
})
